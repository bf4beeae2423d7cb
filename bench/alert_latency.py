"""Alert latency: device message to page on the crew's MQTT topic, p50 and p99.

Runs everything on loopback: a Mosquitto of its own on a free port, the hub as a
child process (``hallhub run``), a background load of rating-pad messages from a
second child process, and, here, a probe that presses a toilet alarm and waits for
the "opened" notice on the duty desk's topic. It measures once without load (the
baseline) and once under the load, and prints both.

    .venv/bin/python -m bench.alert_latency [--rate 2000] [--probes 300] [--quick]

Target (issue 7): p99 at most 25 ms under 2,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml

from bench.report import Row, emit
from hub.broker import ManagedBroker

LOOPBACK = "127.0.0.1"
PADS = 20
HUB_ID = "hall-bench"
TOPIC_ROOT = "hall"
CREW_ROOT = "hallhub"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def write_config(folder: Path, broker_port: int, console_port: int, alarms: int) -> Path:
    devices: list[dict[str, Any]] = [
        {"id": f"alarm-{n}", "model": "toilet-alarm-ta1", "zone": "f1-wc"} for n in range(alarms)
    ]
    devices += [
        {"id": f"pad-{n}", "model": "rating-pad-rp5", "zone": "f1-windows", "window": f"W{n}"}
        for n in range(PADS)
    ]
    config = {
        "hub": {"id": HUB_ID, "state_dir": str(folder / "state"), "clock_sync": "assume"},
        "mqtt": {
            "host": LOOPBACK,
            "port": broker_port,
            "topic_root": TOPIC_ROOT,
            "crew_topic_root": CREW_ROOT,
            "client_id": f"hallhub-bench-{secrets.token_hex(3)}",
        },
        "console": {"host": LOOPBACK, "port": console_port},
        "devices": devices,
    }
    path = folder / "hallhub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def background_load(broker_port: int, rate: int, stop: Any, sent: Any) -> None:
    """Child process: rating-pad messages at `rate` per second, QoS 1, until `stop`."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-load")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(LOOPBACK, broker_port)
    client.loop_start()
    boot = secrets.token_hex(3)
    started = time.monotonic()
    count = 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while count < due:
            pad = count % PADS
            body = {
                "msg_id": f"{boot}-{count}",
                "ts": time.time(),
                "level": "满意",
                "window": f"W{pad}",
            }
            client.publish(f"{TOPIC_ROOT}/pad-{pad}/rating", json.dumps(body), qos=1)
            count += 1
        time.sleep(0.002)
    sent.value = count
    client.disconnect()
    client.loop_stop()


class Probe:
    """Presses alarms one at a time and times the duty desk's 'opened' notice."""

    def __init__(self, broker_port: int) -> None:
        self._arrived: dict[str, float] = {}
        self.pressed_wall: dict[str, float] = {}
        self.arrived_wall: dict[str, float] = {}
        self._seen = threading.Condition()
        ready = threading.Event()
        topic = f"{CREW_ROOT}/{HUB_ID}/crews/duty_desk/alerts"
        self.listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-crew")
        self.listener.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.listener.on_subscribe = lambda *_: ready.set()
        self.listener.on_message = self._on_notice
        self.listener.connect(LOOPBACK, broker_port)
        self.listener.loop_start()
        self.device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alarms")
        self.device.connect(LOOPBACK, broker_port)
        self.device.loop_start()
        if not ready.wait(10):
            raise SystemExit("the probe could not subscribe to the crew topic")

    def _on_notice(self, _client: Any, _userdata: Any, message: Any) -> None:
        arrived = time.monotonic()
        notice = json.loads(message.payload)
        if notice.get("event") == "opened":
            self.arrived_wall[notice["device_id"]] = time.time()
            with self._seen:
                self._arrived[notice["device_id"]] = arrived
                self._seen.notify_all()

    def press(self, alarm: str) -> float | None:
        """Seconds from the press leaving the device to the page arriving."""
        body = json.dumps({"msg_id": secrets.token_hex(6), "ts": time.time(), "source": "cord"})
        pressed = time.monotonic()
        self.pressed_wall[alarm] = time.time()
        self.device.publish(f"{TOPIC_ROOT}/{alarm}/call", body, qos=1)
        with self._seen:
            if not self._seen.wait_for(lambda: alarm in self._arrived, timeout=5):
                return None
            return self._arrived[alarm] - pressed

    def close(self) -> None:
        for client in (self.listener, self.device):
            client.disconnect()
            client.loop_stop()


def measure(probe: Probe, alarms: range) -> tuple[list[float], int]:
    latencies: list[float] = []
    lost = 0
    for n in alarms:
        latency = probe.press(f"alarm-{n}")
        if latency is None:
            lost += 1
        else:
            latencies.append(latency)
        time.sleep(0.02)
    return latencies, lost


def describe(name: str, latencies: list[float], lost: int) -> dict[str, float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(
        f"{name:<22} n={len(ordered):<4} lost={lost:<3} p50={p50:6.2f} ms"
        f"  p99={p99:6.2f} ms  max={ordered[-1] * 1000:6.2f} ms"
    )
    return {"p50": p50, "p99": p99}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stages(journal: Path, probe: Probe, alarms: range) -> None:
    """Where the time went, per stage, from the hub's own timestamps (wall clock)."""
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT a.device_id, e.received_at, a.opened_at FROM alerts a"
            " JOIN events e ON e.event_id = a.opened_by_event"
        ).fetchall()
    wanted = {f"alarm-{n}" for n in alarms}
    split: dict[str, list[float]] = {
        "device -> journal": [],
        "journal -> alert": [],
        "alert -> crew topic": [],
    }
    for device_id, received_at, opened_at in rows:
        if device_id not in wanted or device_id not in probe.arrived_wall:
            continue
        split["device -> journal"].append(received_at - probe.pressed_wall[device_id])
        split["journal -> alert"].append(opened_at - received_at)
        split["alert -> crew topic"].append(probe.arrived_wall[device_id] - opened_at)
    for name, values in split.items():
        if values:
            describe(f"  {name}", values, 0)


def wait_healthy(console_port: int, hub: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise SystemExit("the hub exited during start")
        try:
            if httpx.get(f"http://{LOOPBACK}:{console_port}/healthz", timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the hub did not start within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="background events per second")
    parser.add_argument("--probes", type=int, default=300, help="alarm presses per phase")
    parser.add_argument("--quick", action="store_true", help="100 presses per phase")
    args = parser.parse_args()
    if args.quick:
        args.probes = 100

    with tempfile.TemporaryDirectory(prefix="hallhub-bench-") as temp:
        run(Path(temp), args.rate, args.probes)
    return 0


def run(folder: Path, rate: int, probes: int) -> None:
    broker = ManagedBroker(folder / "broker", LOOPBACK, free_port())
    broker.start()
    console_port = free_port()
    config = write_config(folder, broker.port, console_port, 2 * probes)
    root = Path(__file__).resolve().parent.parent
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "--log-level", "ERROR", "run", "--config", str(config)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    probe: Probe | None = None
    try:
        wait_healthy(console_port, hub)
        probe = Probe(broker.port)
        time.sleep(0.5)
        idle = measure(probe, range(probes))

        stop = multiprocessing.Event()
        sent = multiprocessing.Value("l", 0)
        load = multiprocessing.Process(target=background_load, args=(broker.port, rate, stop, sent))
        load.start()
        time.sleep(2.0)  # let the load reach its rate
        started, cpu_before = time.monotonic(), cpu_seconds(hub.pid)
        loaded = measure(probe, range(probes, 2 * probes))
        elapsed, cpu_used = time.monotonic() - started, cpu_seconds(hub.pid) - cpu_before
        stop.set()
        load.join(timeout=30)
    finally:
        if probe is not None:
            probe.close()
        hub.terminate()
        hub.wait(timeout=30)
        broker.stop()

    print(
        f"background load: {sent.value} rating messages, asked {rate}/s;"
        f" hub CPU under load {100 * cpu_used / elapsed:.0f}% of one core;"
        f" cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )
    base = describe("baseline (no load)", *idle)
    stages(folder / "state" / "journal.sqlite3", probe, range(probes))
    under = describe(f"under {rate}/s load", *loaded)
    stages(folder / "state" / "journal.sqlite3", probe, range(probes, 2 * probes))
    print(f"p99 under load / baseline p99: {under['p99'] / base['p99']:.2f}x")
    verdict = "met" if under["p99"] <= 25.0 else "missed"
    print(f"target p99 <= 25 ms under {rate}/s: {verdict} ({under['p99']:.2f} ms)")
    lost = idle[1] + loaded[1]
    emit(
        [
            Row("alert_latency", f"p99 call to page, {rate}/s load", under["p99"], "ms",
                "<= 25 ms", under["p99"] <= 25.0),
            Row("alert_latency", "p99 under load vs idle", under["p99"] / base["p99"],
                "x idle p99", "informative", None),
            Row("alert_latency", "calls without a page", lost, "calls", "0", lost == 0),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
