"""Durable QoS 1 ingest: the hub against a bare paho subscriber, and CPU per event.

One run, one broker (hallhub's shipped settings), the same publishers:

1. a bare paho subscriber (MQTT 5, QoS 1, automatic PUBACK, stores nothing) takes
   `--messages` messages: its events/s is the baseline;
2. the hub (child process: journal synchronous=FULL, validation on, the shipped rule
   pack loaded, PUBACK only after commit) takes the same number: events/s until
   the last one is in the journal;
3. a real hall's load: `--devices` devices (about 300) sending one message every
   6 s each, for `--seconds`; the hub's CPU time divided by the events journaled.

    .venv/bin/python -m bench.mqtt_ingest [--messages 40000] [--devices 300]

Target (issue 3): the hub takes at least 0.8x the bare subscriber's events/s.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from bench.mqtt_hall import LOOPBACK, PUBLISHERS, TOPIC_ROOT, BenchHall, publish
from bench.report import Row, emit

BENCH = "mqtt_ingest"
HALL_INTERVAL = 6.0  # seconds between messages of one device at a hall's pace


class BareSubscriber:
    """Counts QoS 1 messages and nothing else: the most a client can take."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self.last_at = 0.0
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(LOOPBACK, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise SystemExit("the bare subscriber got no SUBACK")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"{TOPIC_ROOT}/+/+", options=SubscribeOptions(qos=1))

    def _on_message(self, *_: Any) -> None:
        self.count += 1
        self.last_at = time.monotonic()

    def wait_for(self, total: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.count < total and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.count < total:
            raise SystemExit(f"bare subscriber got {self.count} of {total}")
        return self.last_at

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def bare_rate(hall: BenchHall, total: int) -> float:
    subscriber = BareSubscriber(hall.broker.port)
    try:
        started = time.monotonic()
        publish(hall.broker.port, hall.devices, total)
        finished = subscriber.wait_for(total, timeout=300)
    finally:
        subscriber.close()
    return total / (finished - started)


def hub_rate(hall: BenchHall, total: int) -> float:
    before = hall.journaled()
    started = time.monotonic()
    publish(hall.broker.port, hall.devices, total)
    finished = hall.wait_journaled(before + total, timeout=900)
    return total / (finished - started)


@dataclass(frozen=True)
class HallCpu:
    """The hub's CPU use at a hall's pace."""

    events: int
    idle_share: float  # of one core, with no device sending anything
    busy_share: float  # of one core, under the hall's load
    micros_per_event: float  # all CPU used under load, divided by the events
    marginal_micros: float  # CPU beyond the idle share, divided by the events


def hall_cpu(hall: BenchHall, seconds: float) -> HallCpu:
    """Idle CPU for `seconds`, then CPU under one message per device every 6 s."""
    cpu_before, started = hall.hub_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    idle = (hall.hub_cpu_seconds() - cpu_before) / (time.monotonic() - started)

    total = int(hall.devices * seconds / HALL_INTERVAL) // 2 * 2
    before, cpu_before, started = hall.journaled(), hall.hub_cpu_seconds(), time.monotonic()
    publish(hall.broker.port, hall.devices, total, rate=total / seconds)
    hall.wait_journaled(before + total, timeout=120)
    cpu = hall.hub_cpu_seconds() - cpu_before
    elapsed = time.monotonic() - started
    marginal = max(0.0, cpu - idle * elapsed)
    return HallCpu(total, idle, cpu / elapsed, 1e6 * cpu / total, 1e6 * marginal / total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the hall load")
    parser.add_argument("--quick", action="store_true", help="a short run (hallhub bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.messages = min(args.messages, 10_000)
        args.seconds = min(args.seconds, 10.0)
    total = args.messages // 2 * 2

    with tempfile.TemporaryDirectory(prefix="hallhub-bench-") as temp:
        hall = BenchHall.create(Path(temp), args.devices)
        try:
            bare = bare_rate(hall, total)
            hall.start_hub()
            time.sleep(2.0)  # the hub's subscription is in place (SUBACK) well before this
            hub = hub_rate(hall, total)
            cpu = hall_cpu(hall, args.seconds)
        finally:
            hall.close()

    print(f"{total} messages from {args.devices} devices, {PUBLISHERS} publishers, one broker")
    print(
        f"hall load: {cpu.events} events in {args.seconds:g} s; hub used"
        f" {100 * cpu.busy_share:.1f}% of a core ({100 * cpu.idle_share:.1f}% when idle)"
    )
    emit(
        [
            Row(BENCH, "bare paho subscriber", bare, "events/s", "baseline", None),
            Row(BENCH, "hub durable ingest", hub, "events/s", "-", None),
            Row(
                BENCH,
                "hub / bare subscriber",
                hub / bare,
                "x bare paho",
                ">= 0.8",
                hub >= 0.8 * bare,
            ),
            Row(
                BENCH,
                f"hub CPU at {args.devices} devices",
                cpu.micros_per_event,
                "us/event",
                "-",
                None,
            ),
            Row(BENCH, "hub CPU beyond idle", cpu.marginal_micros, "us/event", "-", None),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
