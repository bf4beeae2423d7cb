"""The hub's outbox: what the city has not acknowledged yet, read from the journal.

Each lane's progress lives in the journal's ``sync_lanes`` table: ``acked_seq`` is
the highest sequence the city confirmed it holds, so everything above it is
pending. Reads go through a reader connection; acknowledgements and errors are
written through the journal's writer, so an ack is on disk before the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from hub.events import LANE_ORDER, Event, Lane
from hub.journal import Journal, read_lane
from sync.poison import Disposition, SetAside, Tombstone, pending_tombstones, set_aside

logger = logging.getLogger(__name__)

T = TypeVar("T")

_LANE_NAMES = frozenset(lane.value for lane in LANE_ORDER)

# The reason a tombstone gives for seqs retention deleted before the city asked again.
RETENTION_REASON = (
    "deleted on the hub by retention after the city had acknowledged them,"
    " before the city asked for them again"
)


@dataclass(frozen=True, slots=True)
class LaneState:
    """One lane's row of ``sync_lanes``."""

    lane: Lane
    acked_seq: int
    last_ack_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class LaneBatch:
    """The pending events of one lane going into a batch, and tombstones among them."""

    lane: Lane
    base: int
    events: list[Event]
    tombstones: list[Tombstone] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Events and tombstones: the seqs this lane's part covers."""
        return len(self.events) + len(self.tombstones)

    @property
    def last_seq(self) -> int:
        """The highest seq sent in this lane."""
        last_event = self.events[-1].seq if self.events else 0
        last_tombstone = self.tombstones[-1].last_seq if self.tombstones else 0
        return max(last_event, last_tombstone, self.base)


class Outbox:
    """Pending events per lane, and the record of what the city acknowledged."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._states = self._load_states()

    # -- reading -----------------------------------------------------------------

    def lane_states(self) -> dict[Lane, LaneState]:
        """Each lane's sync state as last read or written."""
        return dict(self._states)

    def backlog(self) -> dict[Lane, int]:
        """Events journaled but not acknowledged, per lane."""
        last = self._journal.last_seqs()
        return {
            lane: max(0, last.get(lane, 0) - self._states[lane].acked_seq) for lane in LANE_ORDER
        }

    async def pending(self, limit: int) -> list[LaneBatch]:
        """Up to `limit` unacknowledged events in total, filled in lane priority."""
        return await asyncio.to_thread(self._read_pending, limit)

    def read_pending_after(self, bases: Mapping[Lane, int], limit: int) -> list[LaneBatch]:
        """Like `pending`, as if each lane in `bases` were acknowledged up to it.

        Blocking (run it in a thread); it does not touch the lane states, so it can
        run beside a batch in flight.
        """
        conn = self._journal.reader()
        try:
            conn.execute("BEGIN")
            acked = {lane: state.acked_seq for lane, state in self._states.items()}
            acked.update(bases)
            return _fill(conn, self._journal.hub_id, acked, limit)
        finally:
            conn.close()

    # -- writing -----------------------------------------------------------------

    async def record_acks(self, acks: Mapping[Lane, int], at: float) -> dict[Lane, int]:
        """Store the city's acks; return how many events each newly acknowledged."""
        before = {lane: self._states[lane].acked_seq for lane in acks}

        def update(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            for lane, seq in acks.items():
                conn.execute(
                    "UPDATE sync_lanes SET acked_seq = MAX(acked_seq, ?), last_ack_at = ?,"
                    " last_error = NULL WHERE lane = ?",
                    (seq, at, lane.value),
                )
            return _select_states(conn)

        self._remember(await self._write(update))
        return {lane: self._states[lane].acked_seq - before[lane] for lane in acks}

    async def rewind(self, acks: Mapping[Lane, int], at: float) -> dict[Lane, tuple[int, int]]:
        """Move lanes back to a lower ack: the city holds less than it once confirmed.

        `record_acks` only moves forward (a late or repeated reply must never undo
        progress); this is the one step that moves back, taken when the city answers
        an ack below the base the hub sent (a city restored from a backup). Returns
        (old, new) ``acked_seq`` for each lane it moved.
        """

        def update(
            conn: sqlite3.Connection,
        ) -> tuple[dict[Lane, tuple[int, int]], list[sqlite3.Row]]:
            moved: dict[Lane, tuple[int, int]] = {}
            for lane, seq in acks.items():
                row = conn.execute(
                    "SELECT acked_seq FROM sync_lanes WHERE lane = ?", (lane.value,)
                ).fetchone()
                if row is None or row[0] <= seq:
                    continue
                conn.execute(
                    "UPDATE sync_lanes SET acked_seq = ?, last_ack_at = ?, last_error = NULL"
                    " WHERE lane = ?",
                    (seq, at, lane.value),
                )
                moved[lane] = (int(row[0]), seq)
            return moved, _select_states(conn)

        moved, rows = await self._write(update)
        self._remember(rows)
        return moved

    async def record_error(self, lanes: Iterable[Lane], message: str) -> None:
        """Store `message` as the last error of `lanes`, unless it is already there."""
        changed = [lane for lane in lanes if self._states[lane].last_error != message]
        if not changed:
            return

        def update(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            conn.executemany(
                "UPDATE sync_lanes SET last_error = ? WHERE lane = ?",
                [(message, lane.value) for lane in changed],
            )
            return _select_states(conn)

        self._remember(await self._write(update))

    async def set_aside(self, event: Event, reason: str, at: float) -> SetAside:
        """Quarantine or dead-letter `event`; its tombstone goes in the next batch."""
        return await self._write(lambda conn: set_aside(conn, event, reason, at))

    # -- internals ---------------------------------------------------------------

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Journal.write would cancel the queued work's future when this task is
        # cancelled, and the journal's writer then fails to settle it; shielding
        # the wrapped future leaves the work to finish and only stops waiting.
        return await asyncio.shield(asyncio.wrap_future(self._journal.call(work)))

    def _load_states(self) -> dict[Lane, LaneState]:
        conn = self._journal.reader()
        try:
            rows = _select_states(conn)
        finally:
            conn.close()
        states = {lane: LaneState(lane, 0, None, None) for lane in LANE_ORDER}
        states.update(_states_from(rows))
        return states

    def _remember(self, rows: list[sqlite3.Row]) -> None:
        self._states.update(_states_from(rows))

    def _read_pending(self, limit: int) -> list[LaneBatch]:
        # A connection per read: a cancelled read left running in its thread
        # then shares nothing with the next one.
        conn = self._journal.reader()
        try:
            conn.execute("BEGIN")
            self._remember(_select_states(conn))
            acked = {lane: state.acked_seq for lane, state in self._states.items()}
            return _fill(conn, self._journal.hub_id, acked, limit)
        finally:
            conn.close()


def _fill(
    conn: sqlite3.Connection, hub_id: str, acked: Mapping[Lane, int], limit: int
) -> list[LaneBatch]:
    """Up to `limit` seqs above `acked`, lane by lane in priority order."""
    batches: list[LaneBatch] = []
    room = limit
    for lane in LANE_ORDER:
        if room <= 0:
            break
        batch = _lane_batch(conn, hub_id, lane, acked[lane], room)
        if batch.size:
            batches.append(batch)
            room -= batch.size
    return batches


def _lane_batch(
    conn: sqlite3.Connection, hub_id: str, lane: Lane, base: int, room: int
) -> LaneBatch:
    """The next `room` seqs of a lane: events, with set-aside ones as tombstones."""
    events = read_lane(conn, hub_id, lane, base, room)
    tombstones = pending_tombstones(conn, lane, base, room)
    if tombstones:
        covered = base + room if not events else events[-1].seq
        tombstones = [t for t in tombstones if t.seq <= covered]
        events = [e for e in events if not any(t.seq <= e.seq <= t.last_seq for t in tombstones)]

    holes = _holes(lane, base, events, tombstones)
    if not holes:
        return LaneBatch(lane, base, events, tombstones)
    return _within_room(lane, base, events, sorted([*tombstones, *holes], key=_seq), room)


def _holes(
    lane: Lane, base: int, events: list[Event], tombstones: list[Tombstone]
) -> list[Tombstone]:
    """Compacted tombstones for seqs above `base` the journal no longer holds.

    Retention deletes only acknowledged events, so seqs go missing above `base` only
    after a lane was moved back (`Outbox.rewind`: the city was restored from a backup
    and asks again for what it once acknowledged). Those events cannot be sent again;
    a tombstone run keeps the lane contiguous at the city so the rest drains.
    """
    holes: list[Tombstone] = []
    expected = base + 1
    entries: list[Event | Tombstone] = [*events, *tombstones]
    for entry in sorted(entries, key=_seq):
        if entry.seq > expected:
            holes.append(
                Tombstone(
                    lane,
                    expected,
                    None,
                    Disposition.COMPACTED,
                    RETENTION_REASON,
                    through_seq=entry.seq - 1,
                )
            )
        last = entry.last_seq if isinstance(entry, Tombstone) else entry.seq
        expected = max(expected, last + 1)
    return holes


def _within_room(
    lane: Lane, base: int, events: list[Event], tombstones: list[Tombstone], room: int
) -> LaneBatch:
    """The lane's first `room` entries (events and tombstones) in seq order."""
    both: list[Event | Tombstone] = [*events, *tombstones]
    entries = sorted(both, key=_seq)[:room]
    kept_events = [e for e in entries if isinstance(e, Event)]
    kept_tombstones = [t for t in entries if isinstance(t, Tombstone)]
    return LaneBatch(lane, base, kept_events, kept_tombstones)


def _seq(entry: Event | Tombstone) -> int:
    return entry.seq


def _select_states(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT lane, acked_seq, last_ack_at, last_error FROM sync_lanes"
    ).fetchall()


def _states_from(rows: Iterable[sqlite3.Row]) -> dict[Lane, LaneState]:
    states: dict[Lane, LaneState] = {}
    for row in rows:
        if row["lane"] not in _LANE_NAMES:
            logger.warning("sync_lanes has unknown lane %r; ignored", row["lane"])
            continue
        lane = Lane(row["lane"])
        states[lane] = LaneState(lane, row["acked_seq"], row["last_ack_at"], row["last_error"])
    return states


def pending_lags(conn: sqlite3.Connection, now: float) -> dict[str, float | None]:
    """Per lane, how long the oldest unacknowledged event has waited (None: nothing)."""
    rows = conn.execute(
        "SELECT s.lane, (SELECT e.received_at FROM events e WHERE e.lane = s.lane"
        " AND e.seq > s.acked_seq ORDER BY e.seq LIMIT 1) FROM sync_lanes s"
    ).fetchall()
    return {
        lane: (None if oldest is None else round(max(0.0, now - oldest), 1))
        for lane, oldest in rows
    }
