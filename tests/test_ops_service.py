"""Running as a service: `hallhub config check`, the systemd unit, and the watchdog.

The watchdog test uses a real unix datagram socket as ``$NOTIFY_SOCKET``, the way
systemd listens, and a real event loop that the test blocks.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from hub.ops.systemd import Notifier, keep_watchdog_fed, watchdog_interval
from tests.test_cli import hallhub

VENV_HALLHUB = Path(sys.executable).with_name("hallhub")


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "hallhub.yaml"
    path.write_text(
        "hub:\n"
        "  id: hall-east\n"
        f"  state_dir: {tmp_path / 'state'}\n"
        "mqtt:\n"
        "  managed: true\n"
        "  port: 18830\n"
        "devices:\n"
        "  - {id: pad-1, model: rating-pad-rp5, window: w1}\n" + extra
    )
    return path


def test_config_check_accepts_a_valid_file_without_running_anything(tmp_path: Path) -> None:
    """A valid configuration exits 0, and the check starts nothing: no state folder appears."""
    config = write_config(tmp_path)

    result = hallhub("config", "check", str(config))

    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert not (tmp_path / "state").exists()


def test_config_check_names_the_file_and_line_of_a_mistake(tmp_path: Path) -> None:
    """A wrong value exits 1 with the file, the line and the field."""
    config = write_config(tmp_path, "operations:\n  shutdown_timeout: -3\n")

    result = hallhub("config", "check", str(config))

    assert result.returncode == 1
    assert f"{config}: line 10" in result.stderr
    assert "shutdown_timeout" in result.stderr


def test_config_check_refuses_an_unknown_device_model(tmp_path: Path) -> None:
    """Checks reach as far as the hub's start does: a device on a model that does not exist."""
    config = write_config(tmp_path, "  - {id: pad-2, model: rating-pad-zz9}\n")

    result = hallhub("config", "check", str(config))

    assert result.returncode == 1
    assert "rating-pad-zz9" in result.stderr and "known models" in result.stderr


def test_unit_runs_the_hub_unprivileged_with_watchdog_and_restart(tmp_path: Path) -> None:
    """The unit is Type=notify with a watchdog, restarts always, runs as an unprivileged
    user in the serial-port group, and checks the configuration before each start."""
    config = write_config(tmp_path)

    result = hallhub("install-service", "--config", str(config), "--dry-run")

    assert result.returncode == 0, result.stderr
    unit = result.stdout
    for line in (
        "Type=notify",
        "Restart=always",
        "WatchdogSec=30",
        "User=hallhub",
        "SupplementaryGroups=dialout",
        "KillMode=process",
        f"ReadWritePaths={tmp_path / 'state'}",
        "TimeoutStopSec=15",
    ):
        assert line in unit.splitlines(), line
    assert f"run --config {config}" in unit
    assert f"config check {config}" in unit


def test_unit_written_to_a_given_path_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`--output` writes the unit there, and systemd's own checker finds nothing wrong."""
    config = write_config(tmp_path)
    unit = tmp_path / "hallhub.service"

    result = hallhub(
        "install-service",
        "--config",
        str(config),
        "--output",
        str(unit),
        "--executable",
        str(VENV_HALLHUB),
    )

    assert result.returncode == 0, result.stderr
    assert unit.read_text().startswith("[Unit]")
    verify = shutil.which("systemd-analyze")
    assert verify is not None, "systemd-analyze is part of the Debian base this targets"
    checked = subprocess.run(
        [verify, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in checked.stderr.splitlines()
        if str(unit) in line or "hallhub.service" in line
    ]
    assert problems == [], checked.stderr


class NotifyListener:
    """A unix datagram socket standing in for systemd's notification socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received: list[tuple[float, str]] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode()))

    def messages(self) -> list[str]:
        return [message for _, message in self.received]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def test_watchdog_pings_while_the_loop_runs_and_stop_while_it_is_blocked(
    tmp_path: Path,
) -> None:
    """WATCHDOG=1 comes from the event loop itself: a blocked loop sends none, so
    systemd's watchdog would fire; once the loop runs again the pings resume."""
    listener = NotifyListener(tmp_path / "notify")
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    blocked: dict[str, float] = {}

    def block_the_loop() -> None:
        blocked["from"] = time.monotonic()
        time.sleep(1.0)
        blocked["until"] = time.monotonic()

    try:
        feeding = asyncio.run_coroutine_threadsafe(
            keep_watchdog_fed(Notifier(str(listener.path)), 0.05), loop
        )
        _wait_for(lambda: len(listener.received) >= 5)
        loop.call_soon_threadsafe(block_the_loop)
        _wait_for(lambda: "until" in blocked)
        pings_before_resume = len(listener.received)
        _wait_for(lambda: len(listener.received) >= pings_before_resume + 5)
    finally:
        feeding.cancel()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()
        listener.close()

    # A ping sent just before the block may be read a moment later; none after that.
    during = [at for at, _ in listener.received if blocked["from"] + 0.2 < at < blocked["until"]]
    assert during == []
    assert set(listener.messages()) == {"WATCHDOG=1"}


def test_watchdog_interval_is_half_of_what_systemd_gives() -> None:
    """systemd passes WatchdogSec as WATCHDOG_USEC; pings go twice as often; none without."""
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None


def test_notifier_reaches_an_abstract_socket() -> None:
    """A NOTIFY_SOCKET starting with '@' names the abstract namespace, as systemd uses."""
    name = f"hallhub-test-{time.monotonic_ns()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    try:
        Notifier("@" + name).send("READY=1")
        assert server.recv(64) == b"READY=1"
    finally:
        server.close()


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_config_file_of_the_unit_is_valid_yaml_for_the_check(tmp_path: Path) -> None:
    """The example the README gives for `operations:` loads as written."""
    config = write_config(
        tmp_path,
        "operations:\n"
        "  shutdown_timeout: 10\n"
        "  wal: {checkpoint_interval: 30, reader_grace: 60, writer_pause: 10}\n"
        "  retention: {telemetry_days: 30, health_days: 90, rating_years: 3,\n"
        "              alarm_years: 3, ticket_years: 3, audit_years: 3}\n"
        "  logs: {format: json, level: INFO, levels: {devices.mqtt_ingest: DEBUG}}\n",
    )
    assert yaml.safe_load(config.read_text())["operations"]["logs"]["format"] == "json"
    assert hallhub("config", "check", str(config)).returncode == 0
