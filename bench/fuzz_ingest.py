"""Fuzz a live hub: 100,000 random MQTT payloads and topics, every one accounted for.

A Mosquitto of the bench's own and the hub as a child process (``hallhub run``),
both on loopback. One client publishes, at QoS 1, a seeded random mix: raw
bytes, JSON objects with the models' field names and random values, valid
messages, broken and oversized JSON, NaN and lone surrogates; on topics of known
devices and messages, unknown messages, and unknown devices. Then it checks:

* the hub is still running and still journals a valid message;
* every message the broker delivered to it is counted once by the hub's own
  metrics, as accepted, duplicate or rejected: none vanished;
* every rejection is in the dead-letter table (its count column adds up).

    python -m bench.fuzz_ingest [--messages 100000] [--seed 9] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml

from bench.loopback import LOOPBACK, free_port, wait_healthy
from bench.report import Row, emit
from hub.broker import ManagedBroker
from hub.events import device_event_id

ROOT = "hall"
CHECKOUT = Path(__file__).resolve().parent.parent
DEVICES = {
    "pad-1": ("rating-pad-rp5", ["rating", "status", "heartbeat"]),
    "alarm-1": ("toilet-alarm-ta1", ["call", "reset", "status", "heartbeat"]),
    "printer-1": ("ticket-printer-tp80", ["ticket", "status", "heartbeat"]),
    "sensor-1": ("occupancy-sensor-os1", ["count", "status", "heartbeat"]),
}
FIELDS = ["level", "window", "ticket", "category", "occupancy", "count_in", "source", "online",
          "paper", "motion", "msg_id", "ts", "green_channel", "case_no"]  # fmt: skip
VALID = {
    "rating": {"level": "满意", "window": "W1"},
    "call": {"source": "cord"},
    "ticket": {"ticket": "A001", "category": "A"},
    "count": {"occupancy": 3},
}


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 2 else 7)
    text = "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40)))
    simple: list[Any] = [None, rng.random() < 0.5, rng.randint(-(2**70), 2**70),
                         rng.uniform(-1e9, 1e9), text, rng.randint(-5, 100), "满意"]  # fmt: skip
    if choice < 7:
        return simple[choice]
    if choice == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_payload(rng: random.Random, message: str, number: int) -> bytes:
    kind = rng.random()
    if kind < 0.25:
        return rng.randbytes(rng.randrange(600))
    if kind < 0.55:
        document = {rng.choice(FIELDS): random_value(rng) for _ in range(rng.randrange(6))}
        return json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()
    if kind < 0.75:
        fields = VALID.get(message, {"online": True})
        return json.dumps({"msg_id": f"fuzz-{number}", "ts": time.time(), **fields}).encode()
    if kind < 0.85:
        return rng.choice([b"[1,2,3]", b'"text"', b"{", b"null", b'{"a":NaN}', b"x" * 5000,
                           b'{"msg_id":"\\ud800"}', b'{"occupancy": Infinity}', b""])  # fmt: skip
    return json.dumps({"msg_id": rng.randrange(10), "occupancy": rng.random() * 1e300}).encode()


def random_topic(rng: random.Random) -> tuple[str, str]:
    """A topic on root/<device>/<message>, and its message name."""
    roll = rng.random()
    device = rng.choice(list(DEVICES))
    message = rng.choice(DEVICES[device][1])
    if roll < 0.15:
        message = "".join(rng.choice("abcxyz_-.é测") for _ in range(rng.randrange(1, 12)))
    elif roll < 0.3:
        device = "".join(rng.choice("abc123-_.é设备") for _ in range(rng.randrange(1, 20)))
    return f"{ROOT}/{device}/{message}", message


def write_config(folder: Path, broker_port: int, console_port: int) -> Path:
    document = {
        "hub": {"id": "hall-fuzz", "state_dir": str(folder / "state"), "clock_sync": "assume"},
        "mqtt": {"host": LOOPBACK, "port": broker_port, "topic_root": ROOT},
        "console": {"host": LOOPBACK, "port": console_port},
        "devices": [{"id": device, "model": model, "zone": "f1", "window": "W1"}
                    for device, (model, _messages) in DEVICES.items()],
    }  # fmt: skip
    path = folder / "hallhub.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def publish_all(port: int, count: int, seed: int) -> int:
    """Publish `count` random messages at QoS 1; how many the broker acknowledged."""
    rng = random.Random(seed)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-fuzzer")
    client.max_inflight_messages_set(500)
    client.connect(LOOPBACK, port)
    client.loop_start()
    sent = []
    for number in range(count):
        topic, message = random_topic(rng)
        sent.append(client.publish(topic, random_payload(rng, message, number), qos=1))
        if number % 10_000 == 9_999:  # MQTT packet ids run out at 65,535 in flight
            sent[-1].wait_for_publish(timeout=300)
    for info in sent:
        info.wait_for_publish(timeout=300)
    client.disconnect()
    client.loop_stop()
    return sum(1 for info in sent if info.is_published())


def journals_a_valid_rating(port: int, journal: Path) -> bool:
    """Whether a valid rating published now reaches the journal within 10 s."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-after-fuzz")
    client.connect(LOOPBACK, port)
    client.loop_start()
    body = json.dumps({"msg_id": "after-fuzz", "ts": time.time(), **VALID["rating"]})
    client.publish(f"{ROOT}/pad-1/rating", body, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    wanted = device_event_id("pad-1", "after-fuzz")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM events WHERE event_id = ?", (wanted,)).fetchone():
                return True
        finally:
            conn.close()
        time.sleep(0.2)
    return False


def hub_counts(console_port: int, token: str) -> Counter[str]:
    """The hub's own count of handled messages, by result (from /metrics)."""
    text = httpx.get(f"http://{LOOPBACK}:{console_port}/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {token}"}).text  # fmt: skip
    results: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("hallhub_events_ingested_total{"):
            labels, value = line.rsplit(" ", 1)
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            results[result] += int(float(value))
    return results


def dead_letter_total(journal: Path) -> int:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        (total,) = conn.execute("SELECT COALESCE(SUM(count), 0) FROM dead_letters").fetchone()
        return int(total)
    finally:
        conn.close()


def wait_settled(
    console_port: int, token: str, expected: int, timeout: float = 600
) -> Counter[str]:
    """Wait until the hub has handled `expected` messages, or stopped making progress."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while True:
        counts = hub_counts(console_port, token)
        handled = counts["accepted"] + counts["duplicate"] + counts["rejected"]
        still = still + 1 if handled == last else 0
        if handled >= expected or still > 20 or time.monotonic() > deadline:
            return counts
        last = handled
        time.sleep(0.5)


def start_hub(folder: Path, config: Path, console_port: int) -> subprocess.Popen[bytes]:
    with (folder / "hub.log").open("ab") as log:
        hub = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "run", "--config",
             str(config)], cwd=CHECKOUT, stdout=log, stderr=log)  # fmt: skip
    wait_healthy(console_port, "the hub")
    return hub


def run(folder: Path, count: int, seed: int) -> list[Row]:
    broker = ManagedBroker(folder / "broker", LOOPBACK, free_port())
    broker.start()
    console_port = free_port()
    hub = start_hub(folder, write_config(folder, broker.port, console_port), console_port)
    try:
        token = (folder / "state" / "api-token").read_text().strip()
        time.sleep(1)  # the hub's subscription
        started = time.monotonic()
        acknowledged = publish_all(broker.port, count, seed)
        counts = wait_settled(console_port, token, acknowledged)
        seconds = time.monotonic() - started
        still_journals = journals_a_valid_rating(broker.port, folder / "state" / "journal.sqlite3")
        alive = hub.poll() is None
        dead_letters = dead_letter_total(folder / "state" / "journal.sqlite3")
    finally:
        hub.terminate()
        hub.wait(timeout=60)
        broker.stop()

    handled = counts["accepted"] + counts["duplicate"] + counts["rejected"]
    print(f"published {acknowledged:,} (acknowledged by the broker) in {seconds:.1f} s;"
          f" hub handled {handled:,}: {dict(counts)}; dead letters counted {dead_letters:,}"
          f"; hub running: {alive}; journals a valid rating after: {still_journals}")  # fmt: skip
    return [
        Row("fuzz_ingest", "random messages through a live hub", acknowledged, "messages",
            f">= {count:,}", acknowledged >= count),
        Row("fuzz_ingest", "messages the hub did not account for", acknowledged - handled,
            "messages", "0", handled == acknowledged),
        Row("fuzz_ingest", "rejections not in dead_letters", counts["rejected"] - dead_letters,
            "messages", "0", counts["rejected"] == dead_letters),
        Row("fuzz_ingest", "hub crashed or stopped journaling", int(not (alive and still_journals)),
            "times", "0", alive and still_journals),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="10,000 messages")
    args = parser.parse_args()
    if args.quick:
        args.messages = 10_000
    os.environ.setdefault("PYTHONHASHSEED", "0")

    with tempfile.TemporaryDirectory(prefix="hallhub-fuzz-") as name:
        emit(run(Path(name), args.messages, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
