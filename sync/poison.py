"""Events the city refuses one by one: set aside on the hub, a tombstone sent instead.

When the uplink has narrowed a refused batch down to one event, that event is set
aside so the rest of its lane can drain:

* telemetry and health are *dead-lettered*: kept in ``sync_dead_letters`` for
  inspection; nobody has to act.
* alarms, ratings and tickets are *quarantined*: kept in ``sync_quarantine`` with
  state ``open`` until a person resolves them, and an alert is raised. They are
  never dropped: the event also stays in the journal.

Either way the city is sent a tombstone for that seq (`pending_tombstones`), which
keeps the lane contiguous at the receiver. The tables belong to the sync package
and are created here, inside the journal's writer transaction.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from dataclasses import dataclass

from hub.events import Event, Lane
from sync.errors import QuarantineError

TABLES = (
    """CREATE TABLE IF NOT EXISTS sync_quarantine (
        lane        TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        event_id    TEXT    NOT NULL,
        device_id   TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        event       TEXT    NOT NULL,
        state       TEXT    NOT NULL DEFAULT 'open',
        set_aside_at REAL   NOT NULL,
        PRIMARY KEY (lane, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS sync_compacted (
        lane        TEXT    NOT NULL,
        first_seq   INTEGER NOT NULL,
        last_seq    INTEGER NOT NULL,
        events      INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        reason      TEXT    NOT NULL,
        compacted_at REAL   NOT NULL,
        PRIMARY KEY (lane, first_seq)
    )""",
    """CREATE TABLE IF NOT EXISTS sync_dead_letters (
        lane        TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        event_id    TEXT    NOT NULL,
        device_id   TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        event       TEXT    NOT NULL,
        set_aside_at REAL   NOT NULL,
        PRIMARY KEY (lane, seq)
    )""",
)


class Disposition(enum.StrEnum):
    """What became of an event the city refused, as the tombstone tells the city."""

    QUARANTINED = "quarantined"
    DEAD_LETTERED = "dead_lettered"
    COMPACTED = "compacted"


# Alarms, ratings and tickets are records a person may be held to: never dropped.
DISPOSITION_BY_LANE: dict[Lane, Disposition] = {
    Lane.ALARM: Disposition.QUARANTINED,
    Lane.RATING: Disposition.QUARANTINED,
    Lane.TICKET: Disposition.QUARANTINED,
    Lane.HEALTH: Disposition.DEAD_LETTERED,
    Lane.TELEMETRY: Disposition.DEAD_LETTERED,
}

_TABLE_BY_DISPOSITION = {
    Disposition.QUARANTINED: "sync_quarantine",
    Disposition.DEAD_LETTERED: "sync_dead_letters",
}


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A seq, or a run of seqs (compaction), the hub sends instead of its events."""

    lane: Lane
    seq: int
    event_id: str | None
    disposition: Disposition
    reason: str
    through_seq: int | None = None

    @property
    def last_seq(self) -> int:
        """The last seq this tombstone stands for."""
        return self.seq if self.through_seq is None else self.through_seq

    def to_wire(self) -> dict[str, object]:
        """The JSON form inside a lane of a batch."""
        wire: dict[str, object] = {
            "seq": self.seq,
            "disposition": self.disposition.value,
            "reason": self.reason,
        }
        if self.event_id is not None:
            wire["event_id"] = self.event_id
        if self.through_seq is not None:
            wire["through_seq"] = self.through_seq
        return wire


@dataclass(frozen=True, slots=True)
class SetAside:
    """An event set aside, for the alert hook."""

    event: Event
    disposition: Disposition
    reason: str


_RESOLUTION_COLUMNS = {"resolved_by": "TEXT", "resolved_at": "REAL", "resolution": "TEXT"}


def ensure_tables(conn: sqlite3.Connection) -> None:
    """Create the sync package's tables in the journal if they are missing."""
    for statement in TABLES:
        conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(sync_quarantine)")}
    for name, kind in _RESOLUTION_COLUMNS.items():
        if name not in columns:
            conn.execute(f"ALTER TABLE sync_quarantine ADD COLUMN {name} {kind}")


def resolve_quarantined(
    conn: sqlite3.Connection, lane: Lane, seq: int, by: str, resolution: str, at: float
) -> dict[str, object]:
    """Close an open quarantine entry with what a person did about it.

    The event itself stays as it is, in the journal and in the quarantine table:
    the resolution records the outcome (re-entered at the city by hand, confirmed
    as a device fault, ...), not a change to the record.
    """
    ensure_tables(conn)
    row = conn.execute(
        "SELECT state FROM sync_quarantine WHERE lane = ? AND seq = ?", (lane.value, seq)
    ).fetchone()
    if row is None:
        raise QuarantineError(f"no quarantined {lane.value} event at seq {seq}")
    if row[0] != "open":
        raise QuarantineError(f"quarantined {lane.value} event at seq {seq} is already {row[0]}")
    conn.execute(
        "UPDATE sync_quarantine SET state = 'resolved', resolved_by = ?, resolved_at = ?,"
        " resolution = ? WHERE lane = ? AND seq = ?",
        (by, at, resolution, lane.value, seq),
    )
    entry = conn.execute(
        "SELECT lane, seq, event_id, device_id, reason, set_aside_at, state, resolved_by,"
        " resolved_at, resolution FROM sync_quarantine WHERE lane = ? AND seq = ?",
        (lane.value, seq),
    ).fetchone()
    return dict(zip(_ENTRY_FIELDS, entry, strict=True))


_ENTRY_FIELDS = (
    "lane", "seq", "event_id", "device_id", "reason", "set_aside_at", "state",
    "resolved_by", "resolved_at", "resolution",
)  # fmt: skip


def set_aside(conn: sqlite3.Connection, event: Event, reason: str, at: float) -> SetAside:
    """Record `event` as quarantined or dead-lettered, by its lane's policy."""
    disposition = DISPOSITION_BY_LANE[event.lane]
    table = _TABLE_BY_DISPOSITION[disposition]
    ensure_tables(conn)
    conn.execute(
        f"INSERT INTO {table} (lane, seq, event_id, device_id, reason, event, set_aside_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (lane, seq) DO NOTHING",
        (
            event.lane.value,
            event.seq,
            event.event_id,
            event.device_id,
            reason,
            json.dumps(event.to_wire(), ensure_ascii=False),
            at,
        ),
    )
    return SetAside(event, disposition, reason)


def pending_tombstones(
    conn: sqlite3.Connection, lane: Lane, after_seq: int, limit: int
) -> list[Tombstone]:
    """Tombstones of `lane` reaching above `after_seq`, in seq order.

    A compacted run that starts at or below `after_seq` (part of it was
    acknowledged through real events sent before it was compacted) is cut to
    start at ``after_seq + 1``, so the city sees no gap.
    """
    if not _tables_exist(conn):
        return []
    rows = conn.execute(
        "SELECT seq, seq, event_id, reason, 'quarantined' FROM sync_quarantine"
        " WHERE lane = ? AND seq > ?"
        " UNION ALL SELECT seq, seq, event_id, reason, 'dead_lettered' FROM sync_dead_letters"
        " WHERE lane = ? AND seq > ?"
        " UNION ALL SELECT first_seq, last_seq, NULL, reason, 'compacted' FROM sync_compacted"
        " WHERE lane = ? AND last_seq > ? ORDER BY 1 LIMIT ?",
        (lane.value, after_seq, lane.value, after_seq, lane.value, after_seq, limit),
    ).fetchall()
    tombstones: list[Tombstone] = []
    for first, last, event_id, reason, disposition in rows:
        kind = Disposition(disposition)
        if kind is Disposition.COMPACTED:
            start = max(first, after_seq + 1)
            tombstones.append(Tombstone(lane, start, None, kind, reason, through_seq=last))
        else:
            tombstones.append(Tombstone(lane, first, event_id, kind, reason))
    return tombstones


def open_quarantine(conn: sqlite3.Connection) -> list[dict[str, object]]:
    """Every quarantine entry still open: lane, seq, event_id, device_id."""
    if not _tables_exist(conn):
        return []
    rows = conn.execute(
        "SELECT lane, seq, event_id, device_id FROM sync_quarantine WHERE state = 'open'"
        " ORDER BY set_aside_at"
    ).fetchall()
    return [dict(zip(("lane", "seq", "event_id", "device_id"), row, strict=True)) for row in rows]


def set_aside_summary(conn: sqlite3.Connection) -> dict[str, object]:
    """Counts and the latest entries, for ``hallhub sync status`` and the console."""
    if not _tables_exist(conn):
        return {
            "quarantined_open": 0,
            "dead_lettered": 0,
            "compacted_events": 0,
            "quarantine": [],
            "dead_letters": [],
        }
    (compacted,) = conn.execute("SELECT COALESCE(SUM(events), 0) FROM sync_compacted").fetchone()
    columns = "lane, seq, event_id, device_id, reason, set_aside_at"
    present = {row[1] for row in conn.execute("PRAGMA table_info(sync_quarantine)")}
    resolution = "".join(f", {name}" for name in _RESOLUTION_COLUMNS if name in present)
    quarantine = conn.execute(
        f"SELECT {columns}, state{resolution} FROM sync_quarantine"
        " ORDER BY set_aside_at DESC LIMIT 50"
    ).fetchall()
    dead = conn.execute(
        f"SELECT {columns} FROM sync_dead_letters ORDER BY set_aside_at DESC LIMIT 50"
    ).fetchall()
    (open_count,) = conn.execute(
        "SELECT COUNT(*) FROM sync_quarantine WHERE state = 'open'"
    ).fetchone()
    (dead_count,) = conn.execute("SELECT COUNT(*) FROM sync_dead_letters").fetchone()
    return {
        "quarantined_open": open_count,
        "dead_lettered": dead_count,
        "compacted_events": compacted,
        "quarantine": [dict(row) for row in quarantine],
        "dead_letters": [dict(row) for row in dead],
    }


def _tables_exist(conn: sqlite3.Connection) -> bool:
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('sync_quarantine', 'sync_dead_letters', 'sync_compacted')"
    ).fetchone()
    return bool(count == 3)
