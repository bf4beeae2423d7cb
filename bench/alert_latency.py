"""Alert latency: device message to page on the crew's MQTT topic, p50 and p99.

Runs everything on loopback: a Mosquitto of its own on a free port, the hub as a
child process (``hallhub run``), a background load of rating-pad messages from a
second child process, and, here, a probe that presses a toilet alarm and waits for
the "opened" notice on the duty desk's topic. It measures once without load (the
baseline) and once under the load, and prints both.

    .venv/bin/python bench/alert_latency.py [--rate 2000] [--probes 300]

Target (issue 7): p99 at most 25 ms under 2,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import socket
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
            body = {"msg_id": f"{boot}-{count}", "ts": time.time(), "level": "满意",
                    "window": f"W{pad}"}  # fmt: skip
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
            with self._seen:
                self._arrived[notice["device_id"]] = arrived
                self._seen.notify_all()

    def press(self, alarm: str) -> float | None:
        """Seconds from the press leaving the device to the page arriving."""
        body = json.dumps({"msg_id": secrets.token_hex(6), "ts": time.time(), "source": "cord"})
        pressed = time.monotonic()
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
    print(f"{name:<22} n={len(ordered):<4} lost={lost:<3} p50={p50:6.2f} ms  p99={p99:6.2f} ms"
          f"  max={ordered[-1] * 1000:6.2f} ms")  # fmt: skip
    return {"p50": p50, "p99": p99}


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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hallhub-bench-") as temp:
        folder = Path(temp)
        broker = ManagedBroker(folder / "broker", LOOPBACK, free_port())
        broker.start()
        console_port = free_port()
        config = write_config(folder, broker.port, console_port, 2 * args.probes)
        hub = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "--log-level", "ERROR", "run", "--config",
             str(config)],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )  # fmt: skip
        probe: Probe | None = None
        try:
            wait_healthy(console_port, hub)
            probe = Probe(broker.port)
            time.sleep(0.5)
            idle = measure(probe, range(args.probes))

            stop = multiprocessing.Event()
            sent = multiprocessing.Value("l", 0)
            load = multiprocessing.Process(
                target=background_load, args=(broker.port, args.rate, stop, sent)
            )
            load.start()
            time.sleep(2.0)  # let the load reach its rate
            started = time.monotonic()
            loaded = measure(probe, range(args.probes, 2 * args.probes))
            stop.set()
            load.join(timeout=30)
            elapsed = time.monotonic() - started + 2.0
        finally:
            if probe is not None:
                probe.close()
            hub.terminate()
            hub.wait(timeout=30)
            broker.stop()

    print(f"background load: {sent.value} rating messages in {elapsed:.1f} s "
          f"= {sent.value / elapsed:.0f}/s (asked {args.rate}/s)")  # fmt: skip
    base = describe("baseline (no load)", *idle)
    under = describe(f"under {args.rate}/s load", *loaded)
    print(f"p99 under load / baseline p99: {under['p99'] / base['p99']:.2f}x")
    verdict = "met" if under["p99"] <= 25.0 else "missed"
    print(f"target p99 <= 25 ms under {args.rate}/s: {verdict} ({under['p99']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
