"""Rating chain costs: ratings recorded per second, and how long verify takes.

No target: the figures tell hall IT what a day's ratings cost and what SM3 costs
against SHA-256. A desk over a real journal file records the ratings (each one
checked, chained, journaled for the city); verify then walks the chain, once with
each algorithm.

    python -m bench.ratings_chain [--ratings N]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.report import Row, emit
from hub.alerts import AlertService
from hub.audit import AuditTrail
from hub.calendar import HallCalendar
from hub.clock import ManualClock
from hub.journal import Journal
from hub.ratings import LEVELS, RatingDesk, RatingInput, RatingsSection
from hub.ratings.views import verify

MONDAY_10H = 1_772_416_800.0  # 2026-03-02 10:00 Asia/Shanghai


async def record(folder: Path, algorithm: str, count: int) -> float:
    """Record `count` ratings; returns ratings per second."""
    journal = Journal(folder / "journal.sqlite3", "hall-bench")
    journal.open()
    clock = ManualClock(wall=MONDAY_10H)
    alerts = AlertService(journal, clock, lambda _team, _notice: None)
    await alerts.start()
    audit = AuditTrail(journal, clock)
    await audit.open()
    settings = RatingsSection.model_validate({"hash": algorithm})
    desk = RatingDesk(journal, clock, HallCalendar(), alerts, audit, settings, folder)
    await desk.start()
    started = time.perf_counter()
    for number in range(count):
        level = LEVELS[number % 3]  # good levels: the cost of the chain, not of tasks
        rating = RatingInput(
            window=f"W{number % 12:02d}",
            level=level,
            channel="hall_pad",
            source=f"bench:{number}",
            rated_at=clock.wall() + number,
            case_no=f"BJ-{number}",
        )
        await desk.record(rating)
    elapsed = time.perf_counter() - started
    journal.close()
    return count / elapsed


def verify_seconds(folder: Path) -> float:
    conn = sqlite3.connect(folder / "journal.sqlite3")
    started = time.perf_counter()
    report = verify(conn, "hall-bench")
    elapsed = time.perf_counter() - started
    conn.close()
    assert report["ok"], report["breaks"][:3]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratings", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="a short run (hallhub bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.ratings = min(args.ratings, 500)

    rows: list[Row] = []
    for algorithm in ("sha256", "sm3"):
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            per_second = asyncio.run(record(folder, algorithm, args.ratings))
            seconds = verify_seconds(folder)
        rows.append(
            Row("ratings_chain", f"recorded ({algorithm})", per_second, "ratings/s", "-", None)
        )
        rows.append(
            Row(
                "ratings_chain",
                f"verify {args.ratings} ratings ({algorithm})",
                seconds,
                "s",
                "-",
                None,
            )
        )
    emit(rows)


if __name__ == "__main__":
    main()
