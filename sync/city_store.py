"""The city receiver's storage: events kept once per id, in order within each lane.

A batch is applied lane by lane against the lane's high-water mark (hwm), the
highest sequence stored contiguously for (hub, epoch, lane)::

    hwm = stored hwm if the lane has a mark, else the base sent by the hub
    seq <= hwm      already held: skip
    seq == hwm + 1  insert unless the event id is already stored; hwm += 1
    seq >  hwm + 1  a gap: stop this lane

A lane may also carry tombstones: a seq the hub set aside (an event the city
refused, quarantined or dead-lettered on the hub, or telemetry compacted away).
A tombstone is applied like an event at its seq, stored in ``tombstones``, so the
lane stays contiguous without the event.

The whole batch is one transaction. `BatchStore` is the interface;
`SQLiteBatchStore` here and `sync.pg_store.PostgresBatchStore` implement it. Each
also holds the city's command queue (`sync.command_store`) in the same database.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.events import LANE_ORDER, Lane
from sync.command_store import SCHEMA as COMMAND_SCHEMA
from sync.command_store import CommandTables, Execute
from sync.rating_chain import RECENT_BREAKS, chain_status, check_rating_chain

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id                  INTEGER PRIMARY KEY,
    hub_id              TEXT    NOT NULL,
    event_id            TEXT    NOT NULL,
    epoch               INTEGER NOT NULL,
    lane                TEXT    NOT NULL,
    seq                 INTEGER NOT NULL,
    device_id           TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    type                TEXT    NOT NULL,
    data                TEXT    NOT NULL,
    received_at         REAL    NOT NULL,
    clock_synchronised  INTEGER NOT NULL,
    device_time         REAL,
    retained            INTEGER NOT NULL,
    stored_at           REAL    NOT NULL,
    UNIQUE (hub_id, event_id)
);
CREATE TABLE IF NOT EXISTS tombstones (
    hub_id       TEXT    NOT NULL,
    epoch        INTEGER NOT NULL,
    lane         TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    through_seq  INTEGER NOT NULL,
    event_id     TEXT,
    disposition  TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    stored_at    REAL    NOT NULL,
    PRIMARY KEY (hub_id, epoch, lane, seq)
);
CREATE INDEX IF NOT EXISTS events_by_lane ON events (hub_id, lane, epoch, seq);
CREATE TABLE IF NOT EXISTS rating_links (
    hub_id       TEXT    NOT NULL,
    chain_index  INTEGER NOT NULL,
    link         TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    PRIMARY KEY (hub_id, chain_index)
);
CREATE TABLE IF NOT EXISTS rating_chain_breaks (
    id           INTEGER PRIMARY KEY,
    hub_id       TEXT    NOT NULL,
    chain_index  INTEGER NOT NULL,
    event_id     TEXT    NOT NULL,
    problem      TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    seen_at      REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS lane_marks (
    hub_id      TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    lane        TEXT    NOT NULL,
    hwm         INTEGER NOT NULL,
    repeats     INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (hub_id, epoch, lane)
);
"""


class WireEvent(BaseModel):
    """One event as the hub sends it (`hub.events.Event.to_wire`)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    hub_id: str
    epoch: int = Field(ge=1)
    lane: Lane
    seq: int = Field(ge=1)
    event_id: str = Field(min_length=1, max_length=128)
    device_id: str
    kind: str
    type: str
    data: dict[str, Any]
    received_at: float
    clock_synchronised: bool
    device_time: float | None = None
    retained: bool = False


class WireTombstone(BaseModel):
    """A seq (or a run of seqs up to `through_seq`) the hub will not send, and why."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    seq: int = Field(ge=1)
    through_seq: int | None = None
    event_id: str | None = Field(default=None, min_length=1, max_length=128)
    disposition: Literal["quarantined", "dead_lettered", "compacted"]
    reason: str = Field(max_length=500)

    @property
    def last_seq(self) -> int:
        """The last seq this tombstone stands for."""
        return self.seq if self.through_seq is None else self.through_seq

    @model_validator(mode="after")
    def _run_goes_forward(self) -> WireTombstone:
        if self.through_seq is not None and self.through_seq < self.seq:
            raise ValueError("through_seq must not be below seq")
        return self


class LaneUpload(BaseModel):
    """A lane's part of a batch: the hub's acked seq, the events and tombstones above it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    base: int = Field(ge=0)
    events: list[WireEvent]
    tombstones: list[WireTombstone] = []


@dataclass(frozen=True, slots=True)
class LaneOutcome:
    """What applying one lane of a batch did."""

    hwm: int
    inserted: int
    tombstoned: int
    repeats: int
    duplicates: int
    gap_at: int | None


class BatchStore(Protocol):
    """Where the receiver keeps events, and the city's commands (`commands`)."""

    commands: CommandTables

    def apply_batch(
        self, hub_id: str, epoch: int, lanes: Mapping[Lane, LaneUpload], stored_at: float
    ) -> dict[Lane, LaneOutcome]:
        """Apply a batch in one transaction; return each lane's outcome."""
        ...

    def hub_status(self, hub_id: str) -> dict[str, Any]:
        """Per-lane high-water marks and counts for one hub."""
        ...

    def last_contact(self) -> dict[str, float]:
        """When each hub's lanes last moved (seeds the silence watch at start)."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class SQLiteBatchStore:
    """`BatchStore` in one SQLite file (WAL, synchronous=FULL), one locked connection."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(SCHEMA)
        with self._transaction() as execute:
            for statement in COMMAND_SCHEMA:
                execute(statement, ())
        self.commands = CommandTables(self._transaction, "qmark")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def apply_batch(
        self, hub_id: str, epoch: int, lanes: Mapping[Lane, LaneUpload], stored_at: float
    ) -> dict[Lane, LaneOutcome]:
        """Apply a batch in one transaction; return each lane's outcome."""
        with self._transaction():
            outcomes = {
                lane: self._apply_lane(self._conn, hub_id, epoch, lane, lanes[lane], stored_at)
                for lane in LANE_ORDER
                if lane in lanes
            }
        return outcomes

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Execute]:
        """One write transaction under the lock; rolled back if the block raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn.execute
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def hub_status(self, hub_id: str) -> dict[str, Any]:
        """Per-lane high-water marks and counts for one hub."""
        with self._lock:
            marks = self._conn.execute(
                "SELECT epoch, lane, hwm, repeats, duplicates, updated_at FROM lane_marks"
                " WHERE hub_id = ? ORDER BY epoch, lane",
                (hub_id,),
            ).fetchall()
            counts = self._conn.execute(
                "SELECT lane, COUNT(*) FROM events WHERE hub_id = ? GROUP BY lane", (hub_id,)
            ).fetchall()
            tombstones = self._conn.execute(
                "SELECT lane, COUNT(*) FROM tombstones WHERE hub_id = ? GROUP BY lane", (hub_id,)
            ).fetchall()
            chain = self._chain_status(hub_id)
        return {**status_document(hub_id, marks, counts, tombstones), "rating_chain": chain}

    def _chain_status(self, hub_id: str) -> dict[str, Any]:
        conn = self._conn
        head = conn.execute(
            "SELECT chain_index, link FROM rating_links WHERE hub_id = ?"
            " ORDER BY chain_index DESC LIMIT 1",
            (hub_id,),
        ).fetchone()
        count = conn.execute(
            "SELECT COUNT(*) FROM rating_chain_breaks WHERE hub_id = ?", (hub_id,)
        ).fetchone()[0]
        recent = conn.execute(
            "SELECT chain_index, event_id, problem, detail, seen_at FROM rating_chain_breaks"
            " WHERE hub_id = ? ORDER BY id DESC LIMIT ?",
            (hub_id, RECENT_BREAKS),
        ).fetchall()
        return chain_status(tuple(head) if head else None, int(count), recent)

    def last_contact(self) -> dict[str, float]:
        """When each hub's lanes last moved (seeds the silence watch at start)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT hub_id, MAX(updated_at) FROM lane_marks GROUP BY hub_id"
            ).fetchall()
        return {hub_id: float(at) for hub_id, at in rows}

    def _apply_lane(
        self,
        conn: sqlite3.Connection,
        hub_id: str,
        epoch: int,
        lane: Lane,
        upload: LaneUpload,
        stored_at: float,
    ) -> LaneOutcome:
        stored = conn.execute(
            "SELECT hwm FROM lane_marks WHERE hub_id = ? AND epoch = ? AND lane = ?",
            (hub_id, epoch, lane.value),
        ).fetchone()
        walk = walk_lane(upload, stored[0] if stored else None)
        inserted = _insert_events(conn, hub_id, walk.events, stored_at)
        for tombstone in walk.tombstones:
            _insert_tombstone(conn, hub_id, epoch, lane, tombstone, stored_at)
        if lane is Lane.RATING:
            _keep_rating_chain(conn, hub_id, walk.events, stored_at)
        outcome = walk.outcome(inserted)
        hwm, repeats, duplicates = outcome.hwm, outcome.repeats, outcome.duplicates
        conn.execute(
            "INSERT INTO lane_marks (hub_id, epoch, lane, hwm, repeats, duplicates, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (hub_id, epoch, lane) DO UPDATE SET hwm = excluded.hwm,"
            " repeats = repeats + excluded.repeats,"
            " duplicates = duplicates + excluded.duplicates, updated_at = excluded.updated_at",
            (hub_id, epoch, lane.value, hwm, repeats, duplicates, stored_at),
        )
        return outcome


@dataclass(frozen=True, slots=True)
class LaneWalk:
    """What a lane's part of a batch adds: the entries to store and the new hwm."""

    hwm: int
    events: list[WireEvent]
    tombstones: list[WireTombstone]
    repeats: int
    gap_at: int | None

    def outcome(self, inserted: int) -> LaneOutcome:
        """The lane's outcome once the store inserted `inserted` of `events`."""
        tombstoned = sum(t.last_seq - t.seq + 1 for t in self.tombstones)
        duplicates = len(self.events) - inserted
        return LaneOutcome(self.hwm, inserted, tombstoned, self.repeats, duplicates, self.gap_at)


def walk_lane(upload: LaneUpload, stored_hwm: int | None) -> LaneWalk:
    """Take a lane's events and tombstones above the lane's hwm in seq order, up to a gap.

    The walk starts from `stored_hwm`, the mark the city holds for (hub, epoch, lane),
    even when the hub's `base` is above it: a city restored from a backup holds less
    than it once acknowledged, and answering its own hwm (below `base`) makes the hub
    send the rest again. Only a lane with no mark at all (a new city database, a new
    epoch) starts at `base`, so a city that starts fresh is not sent years of history.

    Every store applies this same rule, then stores what it returns (an event id
    already held is skipped there, by the unique key, and still advances the lane).
    """
    hwm = upload.base if stored_hwm is None else stored_hwm
    events: list[WireEvent] = []
    tombstones: list[WireTombstone] = []
    repeats = 0
    gap_at: int | None = None
    entries: list[WireEvent | WireTombstone] = [*upload.events, *upload.tombstones]
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.seq <= hwm:
            repeats += 1
            continue
        if entry.seq > hwm + 1:
            gap_at = entry.seq
            break
        if isinstance(entry, WireTombstone):
            tombstones.append(entry)
            hwm = entry.last_seq
        else:
            events.append(entry)
            hwm += 1
    return LaneWalk(hwm, events, tombstones, repeats, gap_at)


def event_json(data: dict[str, Any]) -> str:
    """An event's data as compact JSON (serialised in Rust by pydantic-core: fast)."""
    return pydantic_core.to_json(data).decode()


def _insert_events(
    conn: sqlite3.Connection, hub_id: str, events: list[WireEvent], stored_at: float
) -> int:
    """Store events; return how many were new (an id already stored is skipped)."""
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO events (hub_id, event_id, epoch, lane, seq, device_id, kind, type, data,"
        " received_at, clock_synchronised, device_time, retained, stored_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (hub_id, event_id) DO NOTHING",
        [
            (
                hub_id,
                event.event_id,
                event.epoch,
                event.lane.value,
                event.seq,
                event.device_id,
                event.kind,
                event.type,
                event_json(event.data),
                event.received_at,
                int(event.clock_synchronised),
                event.device_time,
                int(event.retained),
                stored_at,
            )
            for event in events
        ],
    )
    return conn.total_changes - before


def _keep_rating_chain(
    conn: sqlite3.Connection, hub_id: str, events: list[WireEvent], stored_at: float
) -> None:
    """Check the batch's rating events against the links held; keep links and breaks."""

    def link_at(index: int) -> str | None:
        row = conn.execute(
            "SELECT link FROM rating_links WHERE hub_id = ? AND chain_index = ?", (hub_id, index)
        ).fetchone()
        return None if row is None else str(row[0])

    check = check_rating_chain(hub_id, events, link_at)
    conn.executemany(
        "INSERT INTO rating_links (hub_id, chain_index, link, event_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [(hub_id, seen.index, seen.link, seen.event_id) for seen in check.links],
    )
    conn.executemany(
        "INSERT INTO rating_chain_breaks (hub_id, chain_index, event_id, problem, detail,"
        " seen_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(hub_id, b.index, b.event_id, b.problem, b.detail, stored_at) for b in check.breaks],
    )


def _insert_tombstone(
    conn: sqlite3.Connection,
    hub_id: str,
    epoch: int,
    lane: Lane,
    tombstone: WireTombstone,
    stored_at: float,
) -> None:
    conn.execute(
        "INSERT INTO tombstones (hub_id, epoch, lane, seq, through_seq, event_id, disposition,"
        " reason, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (hub_id, epoch, lane, seq) DO NOTHING",
        (
            hub_id,
            epoch,
            lane.value,
            tombstone.seq,
            tombstone.last_seq,
            tombstone.event_id,
            tombstone.disposition,
            tombstone.reason,
            stored_at,
        ),
    )


MARK_COLUMNS = ("epoch", "lane", "hwm", "repeats", "duplicates", "updated_at")


def status_document(
    hub_id: str, marks: Sequence[Sequence[Any]], counts: Iterable[Any], tombstones: Iterable[Any]
) -> dict[str, Any]:
    """One hub's status as both stores report it: lane marks and per-lane counts."""
    return {
        "hub_id": hub_id,
        "marks": [dict(zip(MARK_COLUMNS, row, strict=True)) for row in marks],
        "events_stored": {lane: count for lane, count in counts},
        "tombstones_stored": {lane: count for lane, count in tombstones},
    }
