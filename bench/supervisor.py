"""A service manager in miniature: runs a command and starts it again whenever it dies.

It behaves like systemd's ``Restart=always`` with a short ``RestartSec``, so tests and
benchmarks can kill the hub with SIGKILL and watch it come back as it would on a box.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

RESTART_DELAY = 0.1  # systemd's default RestartSec


class Supervisor:
    """Keeps one child process running until `stop()`."""

    def __init__(self, argv: list[str], log_path: Path, restart_delay: float = RESTART_DELAY):
        self._argv = argv
        self._log_path = log_path
        self._restart_delay = restart_delay
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._keep_running, name="supervisor", daemon=True)
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        self._thread.start()

    def kill(self) -> float:
        """SIGKILL the running child; returns the monotonic time of the kill."""
        with self._lock:
            child = self._child
        if child is None:
            raise RuntimeError("no child is running")
        child.send_signal(signal.SIGKILL)
        self.kills += 1
        return time.monotonic()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop restarting; end the child with SIGTERM and return its exit status."""
        self._stopping.set()
        with self._lock:
            child = self._child
        if child is None:
            return None
        child.send_signal(signal.SIGTERM)
        try:
            status = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            status = child.wait()
        self._thread.join(timeout)
        return status

    def _keep_running(self) -> None:
        with self._log_path.open("ab") as log:
            while not self._stopping.is_set():
                with self._lock:
                    self._child = subprocess.Popen(
                        self._argv, stdout=log, stderr=log, env={**os.environ}
                    )
                    self.starts += 1
                status = self._child.wait()
                if self._stopping.is_set():
                    return
                logger.info("child exited with %s; starting it again", status)
                time.sleep(self._restart_delay)
