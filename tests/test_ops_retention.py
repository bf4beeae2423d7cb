"""Retention on a real journal file, with the hub's time driven by a ManualClock.

Events are written with receive times spread over years; the city's acknowledgement
marks are set per lane; then one retention run prunes and reclaims the space.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pydantic
import pytest

from hub.audit import AuditTrail
from hub.clock import ManualClock
from hub.events import Lane
from hub.journal import Journal
from hub.ops.retention import DAY, YEAR, Retention
from hub.ops.settings import RetentionSection
from tests.fixtures.make_journal_v1 import observation

NOW = 1_893_456_000.0  # 2030-01-01
SETTINGS = RetentionSection(telemetry_days=30, rating_years=3, audit_years=2)


async def journal_events(journal: Journal, lane: Lane, ages: list[float], tag: str) -> None:
    """One event per age (seconds before NOW), oldest first, with 2 KB of data each."""
    for n, age in enumerate(ages):
        await journal.append(observation(f"{tag}-{n}", lane, n, NOW - age, padding="p" * 2000))


async def acknowledge(journal: Journal, lane: Lane, seq: int) -> None:
    await journal.write(
        lambda conn: conn.execute(
            "UPDATE sync_lanes SET acked_seq = ? WHERE lane = ?", (seq, lane.value)
        )
    )


def remaining(journal: Journal, lane: Lane) -> list[str]:
    with journal.reading() as conn:
        rows = conn.execute(
            "SELECT event_id FROM events WHERE lane = ? ORDER BY seq", (lane.value,)
        ).fetchall()
    return [row[0] for row in rows]


async def test_acknowledged_old_telemetry_goes_and_the_rest_stays(journal: Journal) -> None:
    """Telemetry older than 30 days goes once the city acknowledged it; unacknowledged
    or younger telemetry stays, and so does every rating younger than 3 years."""
    await journal_events(journal, Lane.TELEMETRY, [90 * DAY, 60 * DAY, 40 * DAY, 5 * DAY], "t")
    await journal_events(journal, Lane.RATING, [2.5 * YEAR, 200 * DAY, 1 * DAY], "r")
    await acknowledge(journal, Lane.TELEMETRY, 2)  # t-2 (40 days) is not acknowledged yet
    await acknowledge(journal, Lane.RATING, 3)

    removed = await Retention(journal, SETTINGS, ManualClock(wall=NOW)).prune_now()

    assert remaining(journal, Lane.TELEMETRY) == ["t-2", "t-3"]
    assert remaining(journal, Lane.RATING) == ["r-0", "r-1", "r-2"]
    assert removed["telemetry"] == 2 and removed["rating"] == 0


async def test_ratings_go_after_their_years_but_a_lane_keeps_its_last_event(
    journal: Journal,
) -> None:
    """Ratings past 3 years go; the newest event of a lane stays even when old, so the
    lane's sequence continues after a quiet spell instead of restarting at 1."""
    await journal_events(journal, Lane.RATING, [5 * YEAR, 4 * YEAR, 1 * YEAR], "r")
    await journal_events(journal, Lane.ALARM, [4 * YEAR, 3.5 * YEAR], "a")
    await acknowledge(journal, Lane.RATING, 3)
    await acknowledge(journal, Lane.ALARM, 2)

    await Retention(journal, SETTINGS, ManualClock(wall=NOW)).prune_now()
    await journal_events(journal, Lane.ALARM, [0.0], "a-new")

    assert remaining(journal, Lane.RATING) == ["r-2"]
    assert remaining(journal, Lane.ALARM) == ["a-1", "a-new-0"]
    assert journal.last_seqs()[Lane.ALARM] == 3


async def test_audit_trail_rows_go_after_their_own_period(journal: Journal) -> None:
    """Audit entries older than audit_years are removed; newer ones stay untouched."""
    clock = ManualClock(wall=NOW - 3 * YEAR)
    audit = AuditTrail(journal, clock)
    await audit.open()
    await audit.record("it-li", "device.commission", "pad-1")
    clock.jump_wall(2 * YEAR)
    await audit.record("it-li", "device.retire", "pad-1")

    removed = await Retention(journal, SETTINGS, ManualClock(wall=NOW)).prune_now()

    assert [entry.action for entry in audit.entries()] == ["device.retire"]
    assert removed["audit"] == 1


def fold_wal_into_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def test_pruned_space_goes_back_to_the_file_system(journal: Journal) -> None:
    """Incremental vacuum returns freed pages: the file shrinks after a large prune."""
    await journal_events(journal, Lane.TELEMETRY, [100 * DAY] * 1500 + [1 * DAY], "bulk")
    await acknowledge(journal, Lane.TELEMETRY, 1501)
    fold_wal_into_file(journal.path)
    before = journal.path.stat().st_size

    await Retention(journal, SETTINGS, ManualClock(wall=NOW)).prune_now()
    fold_wal_into_file(journal.path)

    assert remaining(journal, Lane.TELEMETRY) == ["bulk-1500"]
    assert journal.path.stat().st_size < before / 2


def test_audit_retention_below_six_months_is_refused() -> None:
    """Keeping the audit trail under six months is a configuration error, not a silent cut."""
    with pytest.raises(pydantic.ValidationError, match=r"0\.5"):
        RetentionSection(audit_years=0.25)
