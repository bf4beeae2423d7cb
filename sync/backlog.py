"""The disk bound on the backlog: caps per lane, telemetry compacted first.

While the city is away the journal grows. Every check (once a minute) measures,
per lane, the bytes of events not yet acknowledged:

* telemetry, then health, above their cap are *compacted*: their oldest
  unacknowledged events are deleted and one run tombstone (``sync_compacted``)
  stands for them, so the city still sees a contiguous lane;
* alarms, ratings and tickets are never dropped: above their cap an alert is
  raised for a person instead;
* when the journal's filesystem has less than `alert_free_bytes` free, an alert
  is raised, and telemetry and health are compacted down to half their caps to
  make room for the lanes that must not lose anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.clock import Clock
from hub.errors import HallhubError
from hub.events import Lane
from hub.journal import Journal, reclaim_free_pages
from sync.poison import ensure_tables

logger = logging.getLogger(__name__)

COMPACTABLE: tuple[Lane, ...] = (Lane.TELEMETRY, Lane.HEALTH)
CHECK_SECONDS = 60.0
# A row's fixed cost beyond its JSON and ids: keys, numbers, b-tree overhead.
ROW_OVERHEAD_BYTES = 64

BacklogAlert = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BacklogPolicy:
    """Caps in bytes per lane, and the free space under which to alert."""

    caps: Mapping[Lane, int]
    alert_free_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Compaction:
    """One run of events compacted away."""

    lane: Lane
    first_seq: int
    last_seq: int
    events: int
    bytes: int


class BacklogGuard:
    """Measures the backlog, compacts what may be compacted, alerts on the rest."""

    def __init__(
        self,
        journal: Journal,
        policy: BacklogPolicy,
        clock: Clock,
        alert: BacklogAlert,
        *,
        free_bytes: Callable[[], int] | None = None,
        interval: float = CHECK_SECONDS,
    ) -> None:
        self._journal = journal
        self._policy = policy
        self._clock = clock
        self._alert = alert
        self._free_bytes = free_bytes or self._disk_free
        self._interval = interval

    async def run(self) -> None:
        """Check every `interval` seconds until cancelled; a failed round is retried."""
        while True:
            try:
                await self.check()
            except (HallhubError, OSError, sqlite3.Error) as exc:
                logger.error("backlog check failed: %s; trying again next round", exc)
            await self._clock.sleep(self._interval)

    async def check(self) -> dict[str, Any]:
        """One round: measure, compact, alert. Returns what it found and did."""
        sizes = await asyncio.to_thread(self._measure)
        free = self._free_bytes()
        short = free < self._policy.alert_free_bytes
        if short:
            await self._alert(
                "disk_space_short",
                f"{free // (1024 * 1024)} MiB free beside the journal; compacting telemetry",
            )

        compactions: list[Compaction] = []
        for lane in COMPACTABLE:
            cap = self._policy.caps.get(lane)
            if cap is None:
                continue
            target = cap // 2 if short else cap
            if sizes.get(lane, 0) > target:
                compactions.append(await self._compact(lane, sizes[lane] - target))
        for lane, size in sizes.items():
            cap = self._policy.caps.get(lane)
            if lane not in COMPACTABLE and cap is not None and size > cap:
                await self._alert(
                    f"backlog_over_cap:{lane.value}",
                    f"{lane.value} backlog {size} bytes is over its cap {cap}; never dropped",
                )
        return {"backlog_bytes": sizes, "free_bytes": free, "compacted": compactions}

    # -- steps -------------------------------------------------------------------

    def _measure(self) -> dict[Lane, int]:
        with self._journal.reading() as conn:
            rows = conn.execute(
                "SELECT e.lane, SUM(LENGTH(e.data) + LENGTH(e.event_id) + LENGTH(e.device_id)"
                f" + {ROW_OVERHEAD_BYTES}) FROM events e JOIN sync_lanes s ON s.lane = e.lane"
                " WHERE e.seq > s.acked_seq GROUP BY e.lane"
            ).fetchall()
        return {Lane(lane): int(size) for lane, size in rows}

    async def _compact(self, lane: Lane, excess: int) -> Compaction:
        """Delete the oldest unacknowledged events of `lane` worth at least `excess` bytes."""
        at = self._clock.wall()

        def compact(conn: sqlite3.Connection) -> Compaction:
            ensure_tables(conn)
            (acked,) = conn.execute(
                "SELECT acked_seq FROM sync_lanes WHERE lane = ?", (lane.value,)
            ).fetchone()
            first, last, count, size = _oldest_worth(conn, lane, acked, excess)
            if count == 0:  # acknowledged meanwhile: nothing left to compact
                return Compaction(lane, 0, 0, 0, 0)
            conn.execute(
                "DELETE FROM events WHERE lane = ? AND seq BETWEEN ? AND ?",
                (lane.value, first, last),
            )
            conn.execute(
                "INSERT INTO sync_compacted (lane, first_seq, last_seq, events, bytes, reason,"
                " compacted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (lane.value, first, last, count, size, "backlog over its cap", at),
            )
            reclaim_free_pages(conn)
            return Compaction(lane, first, last, count, size)

        done = await asyncio.shield(asyncio.wrap_future(self._journal.call(compact)))
        logger.warning(
            "compacted %d %s events (seq %d-%d, %d bytes) to keep the backlog under its cap",
            done.events,
            lane.value,
            done.first_seq,
            done.last_seq,
            done.bytes,
        )
        return done

    def _disk_free(self) -> int:
        folder = self._journal.path.parent
        return shutil.disk_usage(folder if folder.exists() else os.getcwd()).free


def _oldest_worth(
    conn: sqlite3.Connection, lane: Lane, acked: int, excess: int
) -> tuple[int, int, int, int]:
    """First and last seq, count and bytes of the oldest pending events ≥ `excess` bytes."""
    # The lane's newest event is never compacted: the journal numbers on from the
    # highest seq it holds, and without it a restarted hub would issue the compacted
    # seqs again (as retention, it keeps each lane's newest event).
    rows = conn.execute(
        "SELECT seq, LENGTH(data) + LENGTH(event_id) + LENGTH(device_id) + ? FROM events"
        " WHERE lane = ? AND seq > ? AND seq < (SELECT MAX(seq) FROM events WHERE lane = ?)"
        " ORDER BY seq",
        (ROW_OVERHEAD_BYTES, lane.value, acked, lane.value),
    )
    first = last = count = size = 0
    for seq, row_bytes in rows:
        if count == 0:
            first = seq
        last, count, size = seq, count + 1, size + row_bytes
        if size >= excess:
            break
    return first, last, count, size
