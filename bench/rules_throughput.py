"""Rule throughput: events per second through the engine with 200 rules loaded.

Target: at least 10,000 events/s. The same run measures the shipped pack alone
(11 rules) as a baseline, so the figure can be read on any machine.

    python -m bench.rules_throughput [--events N] [--rules N] [--quick]
"""

from __future__ import annotations

import argparse
import time

from bench.hall_load import busy_hall_events, many_rules, zones_of
from bench.report import Row, emit
from hub.calendar import HallCalendar
from rules.engine import RulesEngine, RuleTime
from rules.layers import load_layers, shipped_pack
from rules.spec import RuleSpec

MONDAY_10H = 1_772_416_800.0  # 2026-03-02 10:00 Asia/Shanghai
TARGET = 10_000


def rate(rules: list[RuleSpec], events: int) -> tuple[float, int]:
    stream = busy_hall_events(events, MONDAY_10H, 8 * 3600)
    zones = zones_of(stream)
    engine = RulesEngine(rules, HallCalendar())
    firings = 0
    started = time.perf_counter()
    for event in stream:
        now = RuleTime(event.received_at, event.received_at)
        firings += len(engine.evaluate(event, zones[event.device_id], now))
    return events / (time.perf_counter() - started), firings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    args = parser.parse_args()
    if args.quick:
        args.events = 20_000

    baseline, _ = rate(load_layers([("pack", shipped_pack())]).rules, args.events)
    measured, firings = rate(many_rules(args.rules), args.events)
    verdict = "met" if measured >= TARGET else "missed"
    print(f"shipped pack only: {baseline:,.0f} events/s")
    print(
        f"{args.rules} rules: {measured:,.0f} events/s ({firings:,} firings), "
        f"{measured / baseline:.2f} of baseline; target {TARGET:,} events/s {verdict}"
    )
    emit(
        [
            Row("rules_throughput", f"events/s, {args.rules} rules", measured, "events/s",
                f">= {TARGET:,} events/s", measured >= TARGET),
            Row("rules_throughput", f"{args.rules} rules vs shipped pack", measured / baseline,
                "x shipped pack", "informative", None),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    main()
