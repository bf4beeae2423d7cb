"""One hub per state folder: an exclusive lock held for the hub's lifetime.

Two hubs on one journal would fight over sequence numbers and one MQTT session.
The lock is an flock on ``<state_dir>/hub.lock``; the kernel drops it when the
process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from hub.errors import HallhubError

logger = logging.getLogger(__name__)

LOCK_FILE = "hub.lock"


class StateDirInUseError(HallhubError):
    """Another running hub holds this state folder."""


class StateLock:
    """Holds the state folder's lock until `release()`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `StateDirInUseError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            os.close(descriptor)
            raise StateDirInUseError(
                f"{self.path.parent} is in use by another hub (pid {holder}); "
                "stop it first, or give this hub its own state_dir"
            ) from exc

        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
