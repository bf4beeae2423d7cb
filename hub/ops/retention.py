"""Retention: old records leave the journal, the space is reclaimed, disk use is shown.

Telemetry and health events go once the city has acknowledged them and they are
older than their period in days; ratings, alarms and tickets after their own
periods in years, also only once acknowledged; audit trail rows after theirs. The
newest event of each lane always stays, since it carries the lane's sequence and a
lane's sequence must never restart. Freed pages go back to the file system with an
incremental vacuum (the journal is created with ``auto_vacuum = INCREMENTAL``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from hub import metrics
from hub.clock import Clock
from hub.errors import JournalError
from hub.events import Lane
from hub.journal import Journal, reclaim_free_pages
from hub.ops.settings import RetentionSection
from hub.ops.walguard import wal_size

logger = logging.getLogger(__name__)

DAY = 86_400.0
YEAR = 365.25 * DAY
# Pages freed per incremental vacuum step; small steps keep each commit short.
VACUUM_PAGES = 20_000

JOURNAL_BYTES = Gauge(
    "hallhub_journal_disk_bytes",
    "Bytes the journal uses on disk (database and write-ahead log).",
    registry=metrics.REGISTRY,
)
DISK_FREE_BYTES = Gauge(
    "hallhub_disk_free_bytes",
    "Free bytes on the file system of the state folder.",
    registry=metrics.REGISTRY,
)
WRITTEN_PER_DAY = Gauge(
    "hallhub_disk_written_bytes_per_day",
    "Bytes the hub process wrote to storage, over the last day (scaled while younger).",
    registry=metrics.REGISTRY,
)
PRUNED = Gauge(
    "hallhub_retention_pruned_rows",
    "Rows removed by the last retention run, by record kind.",
    ["kind"],
    registry=metrics.REGISTRY,
)


def lane_periods(settings: RetentionSection) -> dict[Lane, float]:
    """Seconds each lane's acknowledged events are kept."""
    return {
        Lane.TELEMETRY: settings.telemetry_days * DAY,
        Lane.HEALTH: settings.health_days * DAY,
        Lane.RATING: settings.rating_years * YEAR,
        Lane.ALARM: settings.alarm_years * YEAR,
        Lane.TICKET: settings.ticket_years * YEAR,
    }


def prune(conn: sqlite3.Connection, settings: RetentionSection, now: float) -> dict[str, int]:
    """Delete what is past its period, inside the caller's transaction; rows per kind."""
    removed: dict[str, int] = {}
    for lane, period in lane_periods(settings).items():
        cursor = conn.execute(
            "DELETE FROM events WHERE lane = ? AND received_at < ?"
            " AND seq <= (SELECT acked_seq FROM sync_lanes WHERE lane = ?)"
            " AND seq < (SELECT MAX(seq) FROM events WHERE lane = ?)",
            (lane.value, now - period, lane.value, lane.value),
        )
        removed[lane.value] = cursor.rowcount
    if _has_table(conn, "audit_trail"):
        cursor = conn.execute(
            "DELETE FROM audit_trail WHERE at < ?", (now - settings.audit_years * YEAR,)
        )
        removed["audit"] = cursor.rowcount
    reclaim_free_pages(conn, VACUUM_PAGES)
    return removed


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return row.fetchone() is not None


@dataclass
class WriteRate:
    """Bytes this process wrote to storage per day, from /proc/self/io samples."""

    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=2000))

    def sample(self, now: float) -> float | None:
        written = _process_bytes_written()
        if written is None:
            return None
        self.samples.append((now, written))
        while len(self.samples) > 1 and now - self.samples[0][0] > DAY:
            self.samples.popleft()
        first_at, first = self.samples[0]
        elapsed = now - first_at
        return (written - first) * DAY / elapsed if elapsed > 0 else None


def _process_bytes_written() -> int | None:
    try:
        text = Path("/proc/self/io").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "write_bytes":
            return int(value)
    return None


class Retention:
    """Prunes the journal on a timer and keeps the disk figures current."""

    def __init__(self, journal: Journal, settings: RetentionSection, clock: Clock) -> None:
        self._journal = journal
        self._settings = settings
        self._clock = clock
        self._rate = WriteRate()
        self.last_run: dict[str, Any] = {}

    async def run(self) -> None:
        while True:
            self.disk_figures()
            try:
                await self.prune_now()
            except JournalError as exc:
                logger.warning("retention could not prune the journal: %s", exc)
            await self._clock.sleep(self._settings.interval)

    async def prune_now(self) -> dict[str, int]:
        """Prune once and reclaim the space; rows removed per kind."""
        now = self._clock.wall()
        removed = await self._journal.write(lambda conn: prune(conn, self._settings, now))
        for kind, count in removed.items():
            PRUNED.labels(kind).set(count)
        self.last_run = {"at": now, "removed": removed}
        if any(removed.values()):
            logger.info("retention removed %s", removed)
        return removed

    def disk_figures(self) -> dict[str, Any]:
        """Disk use of the journal, free space, bytes written per day; also as metrics."""
        path = self._journal.path
        journal_bytes = _size(path) + wal_size(path)
        free = shutil.disk_usage(path.parent).free
        per_day = self._rate.sample(time.monotonic())
        JOURNAL_BYTES.set(journal_bytes)
        DISK_FREE_BYTES.set(free)
        if per_day is not None:
            WRITTEN_PER_DAY.set(per_day)
        return {
            "journal_bytes": journal_bytes,
            "disk_free_bytes": free,
            "written_bytes_per_day": per_day,
            "last_retention": self.last_run,
        }


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
