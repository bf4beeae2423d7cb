"""Backlog drain: how long a 100,000-message broker backlog takes after a hub restart.

The hub starts once (so the broker holds a persistent session for it), stops; the
publishers then leave `--messages` QoS 1 messages queued at the broker (hallhub's
shipped Mosquitto settings); the hub starts again and the clock runs until the last
of them is in the journal. Shipped settings: synchronous=FULL, validation on, the
rule pack loaded.

    .venv/bin/python -m bench.backlog_drain [--messages 100000] [--devices 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.mqtt_hall import BenchHall, publish
from bench.report import Row, emit

BENCH = "backlog_drain"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a short run (hallhub bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.messages = min(args.messages, 20_000)
    total = args.messages // 2 * 2

    with tempfile.TemporaryDirectory(prefix="hallhub-bench-") as temp:
        hall = BenchHall.create(Path(temp), args.devices)
        try:
            hall.start_hub()
            time.sleep(2.0)  # subscribed: the broker now keeps a session for the hub
            hall.stop_hub()
            publish(hall.broker.port, hall.devices, total)
            started = time.monotonic()
            hall.start_hub()
            ready = time.monotonic()
            finished = hall.wait_journaled(total, timeout=1800)
        finally:
            hall.close()

    drain = finished - started
    print(f"{total} messages queued at the broker; hub start to console up {ready - started:.1f} s")
    emit(
        [
            Row(BENCH, f"drain {total} queued messages", drain, "s", "-", None),
            Row(BENCH, "drain rate", total / drain, "events/s", "-", None),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
