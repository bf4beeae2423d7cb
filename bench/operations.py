"""Operations figures of a real `hallhub run` under QoS 1 ingest.

    python -m bench.operations [--seconds 20] [--pads 20]

Starts Mosquitto on a free loopback port and the hub as its own process, publishes
ratings from one device client as fast as the broker acknowledges them, then:
the hub's peak resident memory (for the README's hardware section), the time from
SIGTERM to a clean exit (target: within ``operations.shutdown_timeout``, 10 s), and
the time a backup (`copy_journal`, as `hallhub backup` runs it) of the filled journal
takes while the hub still runs.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.report import Row, emit
from hub.broker import ManagedBroker, pick_free_port
from hub.ops.backup import copy_journal
from tests.hubkit import DeviceClient

SHUTDOWN_BOUND = 10.0


def start_hub(folder: Path, port: int, pads: list[str]) -> subprocess.Popen[bytes]:
    document = {
        "hub": {"id": "bench-ops", "state_dir": str(folder / "hub"), "clock_sync": "assume"},
        "mqtt": {"port": port, "topic_root": "benchops"},
        "console": {"port": 0},
        "devices": [{"id": pad, "model": "rating-pad-rp5", "window": pad} for pad in pads],
        "operations": {"shutdown_timeout": SHUTDOWN_BOUND},
    }
    config = folder / "hallhub.yaml"
    config.write_text(yaml.safe_dump(document))
    command = [sys.executable, "-m", "hub.cli", "run", "--config", str(config)]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def publish_for(port: int, pads: list[str], seconds: float) -> int:
    device = DeviceClient(port, "bench-ops-device")
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for pad in pads:
                device.publish(f"benchops/{pad}/rating", {"level": "满意", "window": pad})
                sent += 1
    finally:
        device.close()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pads", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="a short run (hallhub bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 8.0)
    pads = [f"pad-{n}" for n in range(args.pads)]

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        broker = ManagedBroker(folder / "broker", "127.0.0.1", pick_free_port())
        broker.start()
        try:
            rows = measure(folder, broker.port, pads, args.seconds)
        finally:
            broker.stop()
    emit(rows)


def measure(folder: Path, port: int, pads: list[str], seconds: float) -> list[Row]:
    hub = start_hub(folder, port, pads)
    time.sleep(4)
    sent = publish_for(port, pads, seconds)
    rss = peak_rss_mib(hub.pid)

    started = time.monotonic()
    copy_journal(folder / "hub" / "journal.sqlite3", folder / "copy.sqlite3")
    backup_seconds = time.monotonic() - started

    hub.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    exit_code = hub.wait(timeout=60)
    stop_seconds = time.monotonic() - signalled
    print(f"published {sent} ratings in {seconds:g} s; hub exit code {exit_code}")
    return [
        Row("operations", "hub peak RSS under ingest", rss, "MiB", "informs README", None),
        Row(
            "operations",
            "SIGTERM to clean exit",
            stop_seconds,
            "s",
            f"<= {SHUTDOWN_BOUND:g} s, exit 0",
            exit_code == 0 and stop_seconds <= SHUTDOWN_BOUND,
        ),
        Row("operations", "backup of the journal", backup_seconds, "s", "informs", None),
    ]


if __name__ == "__main__":
    main()
