"""Replay preview over one busy day: about a million journaled events.

Target: under 60 s for `replay_preview` (current rules and a candidate, both over
the whole day). The journal is built first, straight into SQLite, and not timed.
As a baseline the same run times a plain read of the snapshot with no rules.

    python -m bench.replay_day [--events N] [--keep DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.hall_load import busy_hall_events, many_rules, zones_of
from bench.report import Row, emit
from hub.calendar import HallCalendar
from hub.journal import SCHEMA, connect
from rules.layers import load_layers, shipped_pack
from rules.replay import JournalSnapshot, replay_preview

DAY_START = 1_772_409_600.0  # 2026-03-02 08:00 Asia/Shanghai
TARGET_SECONDS = 60.0
HUB_ID = "bench"


def build_journal(path: Path, count: int) -> dict[str, str]:
    events = busy_hall_events(count, DAY_START, 12 * 3600)
    conn = connect(path, writer=True)
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO meta (key, value) VALUES ('hub_id', ?), ('epoch', '1')", (HUB_ID,))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (lane, seq, event_id, epoch, device_id, kind, type, data,"
        " received_at, clock_synced, device_time, retained)"
        " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, 1, NULL, 0)",
        (
            (e.lane.value, e.seq, e.event_id, e.device_id, e.kind, e.type,
             json.dumps(e.data, ensure_ascii=False), e.received_at)
            for e in events
        ),
    )  # fmt: skip
    conn.execute("COMMIT")
    conn.close()
    return zones_of(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build the journal here and keep it")
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    args = parser.parse_args()
    if args.quick:
        args.events = 100_000

    folder = args.keep or Path(tempfile.mkdtemp(prefix="hallhub-bench-"))
    journal = folder / "journal.sqlite3"
    journal.unlink(missing_ok=True)
    started = time.perf_counter()
    zones = build_journal(journal, args.events)
    print(f"journal of {args.events:,} events built in {time.perf_counter() - started:.1f} s")

    end = DAY_START + 24 * 3600
    started = time.perf_counter()
    read = sum(1 for _ in JournalSnapshot(journal, HUB_ID).events(DAY_START, end))
    baseline = time.perf_counter() - started
    print(f"baseline, snapshot read only: {read:,} events in {baseline:.1f} s")

    current = load_layers([("pack", shipped_pack())]).rules
    candidate = many_rules(50)
    started = time.perf_counter()
    report = replay_preview(journal, HUB_ID, DAY_START, end, current, candidate,
                            HallCalendar(), zones)  # fmt: skip
    took = time.perf_counter() - started
    verdict = "met" if took < TARGET_SECONDS else "missed"
    print(
        f"replay preview: {report.events:,} events, {len(report.current):,} firings now, "
        f"{len(report.candidate):,} with the candidate, in {took:.1f} s "
        f"({took / baseline:.1f}x the plain read); target < {TARGET_SECONDS:.0f} s {verdict}"
    )
    # The target is for a whole day of a million events; scale a shorter run to it.
    per_million = took * 1_000_000 / max(report.events, 1)
    emit(
        [
            Row("replay_day", "preview of 1M events (scaled)", per_million, "s",
                f"< {TARGET_SECONDS:.0f} s", per_million < TARGET_SECONDS),
            Row("replay_day", "preview vs plain snapshot read", took / baseline,
                "x plain read", "informative", None),
        ]
    )  # fmt: skip
    if args.keep is None:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
