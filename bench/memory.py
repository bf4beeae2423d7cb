"""Hub memory: resident set of the hub process with 500 devices, the broker excluded.

The hub (child process, shipped settings, the rule pack loaded) runs with
`--devices` devices in its configuration while they all publish at a hall's pace
(one message every 6 s each) for `--seconds`; then the hub's VmRSS and its peak
VmHWM are read from /proc. The broker is a separate process and not counted.

    .venv/bin/python -m bench.memory [--devices 500] [--seconds 30]

Target (issue 3): at most 80 MB.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.mqtt_hall import BenchHall, publish
from bench.report import Row, emit

BENCH = "memory"
TARGET_MB = 80.0
HALL_INTERVAL = 6.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="a short run (hallhub bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 10.0)
    total = int(args.devices * args.seconds / HALL_INTERVAL) // 2 * 2

    with tempfile.TemporaryDirectory(prefix="hallhub-bench-") as temp:
        hall = BenchHall.create(Path(temp), args.devices)
        try:
            hall.start_hub()
            publish(hall.broker.port, hall.devices, total, rate=total / args.seconds)
            hall.wait_journaled(total, timeout=120)
            memory = hall.hub_memory_kib()
        finally:
            hall.close()

    rss, peak = memory["VmRSS"] / 1024, memory["VmHWM"] / 1024
    print(f"{args.devices} devices, {total} messages over {args.seconds:g} s")
    emit(
        [
            Row(BENCH, f"hub RSS, {args.devices} devices", rss, "MiB", "<= 80", rss <= TARGET_MB),
            Row(BENCH, "hub peak RSS (VmHWM)", peak, "MiB", "<= 80", peak <= TARGET_MB),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
