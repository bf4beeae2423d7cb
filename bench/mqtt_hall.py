"""A hall-sized hub for the MQTT benchmarks: its own broker, the hub, device publishers.

Everything runs on loopback: a Mosquitto started here with the settings hallhub
ships (hub/broker.py), the hub as a child process (``hallhub run``, shipped SQLite
synchronous mode, payload validation on, the shipped rule pack loaded), and
publisher child processes that speak for many devices each.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from bench.alert_latency import cpu_seconds, free_port, wait_healthy
from hub.broker import ManagedBroker

LOOPBACK = "127.0.0.1"
HUB_ID = "hall-bench"
TOPIC_ROOT = "hall"
ROOT = Path(__file__).resolve().parent.parent
# (model, message, fields) per device kind, in the order devices are dealt out.
KINDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ticket-printer-tp80", "ticket", {"ticket": "A001", "category": "A"}),
    ("rating-pad-rp5", "rating", {"level": "满意", "window": "W01"}),
    ("toilet-alarm-ta1", "heartbeat", {}),
    ("occupancy-sensor-os1", "count", {"occupancy": 12}),
)
BENCH_TYPES = tuple(sorted({message for _, message, _ in KINDS}))
PUBLISHERS = 2


def device_id(index: int) -> str:
    return f"dev-{index:04d}"


def hall_devices(count: int) -> list[dict[str, Any]]:
    """`count` devices of the four kinds, in rotation."""
    devices = []
    for index in range(count):
        model = KINDS[index % len(KINDS)][0]
        entry: dict[str, Any] = {"id": device_id(index), "model": model, "zone": "1F hall"}
        if model.startswith("rating"):
            entry["window"] = "W01"
        devices.append(entry)
    return devices


def message(index: int, boot: str, number: int) -> tuple[str, bytes]:
    """Topic and payload of message `number` from device `index`."""
    _, name, fields = KINDS[index % len(KINDS)]
    body = {"msg_id": f"{boot}-{number}", "ts": time.time(), **fields}
    return f"{TOPIC_ROOT}/{device_id(index)}/{name}", json.dumps(body).encode()


@dataclass
class BenchHall:
    """The broker and the hub's files for one benchmark run."""

    folder: Path
    devices: int
    broker: ManagedBroker
    console_port: int
    hub: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, folder: Path, devices: int) -> BenchHall:
        broker = ManagedBroker(folder / "broker", LOOPBACK, free_port())
        broker.start()
        hall = cls(folder, devices, broker, free_port())
        hall._write_config()
        return hall

    @property
    def journal(self) -> Path:
        return self.folder / "state" / "journal.sqlite3"

    def start_hub(self) -> None:
        """Start ``hallhub run`` and wait until its console answers."""
        config = self.folder / "hallhub.yaml"
        command = [sys.executable, "-m", "hub.cli", "--log-level", "ERROR", "run"]
        self.hub = subprocess.Popen(
            [*command, "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wait_healthy(self.console_port, self.hub)

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.hub.send_signal(signal.SIGTERM)
            self.hub.wait(timeout=60)
            self.hub = None

    def close(self) -> None:
        self.stop_hub()
        self.broker.stop()

    def hub_cpu_seconds(self) -> float:
        assert self.hub is not None
        return cpu_seconds(self.hub.pid)

    def hub_memory_kib(self) -> dict[str, int]:
        """The hub process's resident set now (VmRSS) and at its peak (VmHWM), in KiB."""
        assert self.hub is not None
        found = {}
        for line in Path(f"/proc/{self.hub.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
        return found

    def journaled(self) -> int:
        """Device messages of the benchmark's types in the journal so far."""
        if not self.journal.exists():
            return 0
        marks = ", ".join("?" * len(BENCH_TYPES))
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                f"SELECT COUNT(*) FROM events WHERE type IN ({marks})", BENCH_TYPES
            ).fetchone()
        return int(row[0])

    def wait_journaled(self, total: int, timeout: float) -> float:
        """Wait until `total` bench messages are journaled; return when (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.journaled() >= total:
                return time.monotonic()
            time.sleep(0.05)
        raise SystemExit(f"only {self.journaled()} of {total} messages journaled in {timeout} s")

    def _write_config(self) -> None:
        config = {
            "hub": {"id": HUB_ID, "state_dir": str(self.folder / "state"), "clock_sync": "assume"},
            "mqtt": {
                "host": LOOPBACK,
                "port": self.broker.port,
                "topic_root": TOPIC_ROOT,
                "client_id": f"hallhub-bench-{secrets.token_hex(3)}",
            },
            "console": {"host": LOOPBACK, "port": self.console_port},
            "devices": hall_devices(self.devices),
        }
        text = yaml.safe_dump(config, allow_unicode=True)
        (self.folder / "hallhub.yaml").write_text(text, encoding="utf-8")


# -- publishers (child processes) --------------------------------------------------


def _publisher(port: int, devices: range, count: int, rate: float, done: Any) -> None:
    """Publish `count` QoS 1 messages round-robin from `devices`; at `rate`/s if > 0."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{secrets.token_hex(4)}"
    )
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect(LOOPBACK, port)
    client.loop_start()
    boot = secrets.token_hex(4)
    started = time.monotonic()
    last = None
    for number in range(count):
        if rate > 0:
            pause = started + number / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        index = devices[number % len(devices)]
        topic, payload = message(index, boot, number)
        last = client.publish(topic, payload, qos=1)
    if last is not None:
        last.wait_for_publish(timeout=600)
    with done.get_lock():
        done.value += 1
    client.disconnect()
    client.loop_stop()


def publish(port: int, devices: int, total: int, rate: float = 0.0) -> None:
    """`total` messages from `devices` devices, split over the publisher processes.

    Returns once every message has its PUBACK. With `rate` > 0 the publishers
    together send that many messages per second.
    """
    done = multiprocessing.Value("i", 0)
    share = total // PUBLISHERS
    workers = [
        multiprocessing.Process(
            target=_publisher,
            args=(port, range(n, devices, PUBLISHERS), share, rate / PUBLISHERS, done),
        )
        for n in range(PUBLISHERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if done.value != PUBLISHERS:
        raise SystemExit("a publisher failed")
