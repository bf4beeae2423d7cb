"""The `hallhub` command line as hall IT uses it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from sync.keys import add_key
from tests.conftest import free_port


def hallhub(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_city_receiver_takes_its_documented_options(tmp_path: Path) -> None:
    """`hallhub city-receiver --db --port --keys` starts the receiver as the README shows."""
    add_key(tmp_path / "keys.json", "hall-x")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "city-receiver",
            "--db",
            str(tmp_path / "city.db"),
            "--port",
            str(port),
            "--keys",
            str(tmp_path / "keys.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.1)
        assert status == 200
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_unknown_model_names_file_line_and_known_models(tmp_path: Path) -> None:
    """A device with a misspelt model is refused with the file, the line and the choices."""
    config = tmp_path / "hallhub.yaml"
    config.write_text(
        "hub:\n  id: hall-x\n  state_dir: state\nconsole:\n  port: 0\ndevices:\n"
        "  - id: printer-1\n    model: ticket-printer-tp80\n"
        "  - id: printer-2\n    model: ticket-printer-tp81\n",
        encoding="utf-8",
    )

    finished = hallhub("run", "--config", str(config))

    assert finished.returncode == 2
    assert str(config) in finished.stderr
    assert "line 10: devices.1.model" in finished.stderr
    assert "ticket-printer-tp80" in finished.stderr  # the known models are listed


def test_busy_console_port_fails_fast_and_leaves_nothing_running(tmp_path: Path) -> None:
    """With the console port taken, the demo says so and stops the broker and receiver."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        state = tmp_path / "demo"
        finished = hallhub(
            "demo", "--for", "5", "--console-port", str(port), "--state-dir", str(state)
        )

    assert finished.returncode == 2
    assert f"console cannot listen on 127.0.0.1:{port}" in finished.stderr
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "a demo child process outlived the failed start"


def test_simulate_prints_the_devices_section(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """`hallhub simulate` prints the devices section to paste into a hall configuration."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "simulate",
            "--broker-port",
            str(broker.port),
            "--topic-root",
            "simcli",
            "--log",
            str(tmp_path / "published.jsonl"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("# end of devices section"):
                break
            lines.append(line)
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()

    devices = yaml.safe_load("".join(lines))["devices"]
    assert {d["id"] for d in devices} >= {"toilet-alarm-1f", "toilet-alarm-2f"}
    assert any("modbus" in d for d in devices)


def test_two_demos_cannot_share_a_folder(tmp_path: Path) -> None:
    """A second demo on a folder in use is refused, and the first keeps reconciling."""
    state = tmp_path / "demo"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "demo",
            "--for",
            "12",
            "--console-port",
            "0",
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (state / "hub.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        second = hallhub("demo", "--for", "5", "--console-port", "0", "--state-dir", str(state))
        output, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    assert second.returncode == 2
    assert "in use by another hub" in second.stderr
    assert first.returncode == 0, output[-2000:]
    assert '"ok": true' in output
