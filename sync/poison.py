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
    """A seq the hub sends as a tombstone instead of its event."""

    lane: Lane
    seq: int
    event_id: str
    disposition: Disposition
    reason: str

    def to_wire(self) -> dict[str, object]:
        """The JSON form inside a lane of a batch."""
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "disposition": self.disposition.value,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class SetAside:
    """An event set aside, for the alert hook."""

    event: Event
    disposition: Disposition
    reason: str


def ensure_tables(conn: sqlite3.Connection) -> None:
    """Create the sync package's tables in the journal if they are missing."""
    for statement in TABLES:
        conn.execute(statement)


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
    """Tombstones of `lane` above `after_seq`, in seq order."""
    if not _tables_exist(conn):
        return []
    rows = conn.execute(
        "SELECT seq, event_id, reason, 'quarantined' FROM sync_quarantine"
        " WHERE lane = ? AND seq > ?"
        " UNION ALL SELECT seq, event_id, reason, 'dead_lettered' FROM sync_dead_letters"
        " WHERE lane = ? AND seq > ? ORDER BY 1 LIMIT ?",
        (lane.value, after_seq, lane.value, after_seq, limit),
    ).fetchall()
    return [
        Tombstone(lane, seq, event_id, Disposition(disposition), reason)
        for seq, event_id, reason, disposition in rows
    ]


def set_aside_summary(conn: sqlite3.Connection) -> dict[str, object]:
    """Counts and the latest entries, for ``hallhub sync status`` and the console."""
    if not _tables_exist(conn):
        return {"quarantined_open": 0, "dead_lettered": 0, "quarantine": [], "dead_letters": []}
    columns = "lane, seq, event_id, device_id, reason, set_aside_at"
    quarantine = conn.execute(
        f"SELECT {columns}, state FROM sync_quarantine ORDER BY set_aside_at DESC LIMIT 50"
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
        "quarantine": [dict(row) for row in quarantine],
        "dead_letters": [dict(row) for row in dead],
    }


def _tables_exist(conn: sqlite3.Connection) -> bool:
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('sync_quarantine', 'sync_dead_letters')"
    ).fetchone()
    return bool(count == 2)
