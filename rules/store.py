"""Where rules keep what must survive a restart: states, timers, firings, zone states.

These tables live in the journal file and are written only through the journal's
writer (`Journal.write`), in the same transaction as the firing that changed them.

Timers are monotonic deadlines. The monotonic clock only continues across a process
restart within one boot; after a reboot, a timer resumes with the time it still had
when last saved, so it never fires early and is never stranded.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.actions import action_from_json, action_to_json
from rules.engine import Firing, StateKey

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rule_state (
    rule_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    state       TEXT NOT NULL,
    saved_mono  REAL NOT NULL,
    boot_id     TEXT NOT NULL,
    PRIMARY KEY (rule_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rule_firings (
    id           INTEGER PRIMARY KEY,
    rule_id      TEXT NOT NULL,
    key          TEXT NOT NULL,
    phase        TEXT NOT NULL,
    trigger_ids  TEXT NOT NULL,
    actions      TEXT NOT NULL,
    fired_at     REAL NOT NULL,
    applied_at   REAL
);
CREATE TABLE IF NOT EXISTS zone_states (
    zone        TEXT NOT NULL,
    state       TEXT NOT NULL,
    value       TEXT NOT NULL,
    rule_id     TEXT NOT NULL,
    set_at      REAL NOT NULL,
    PRIMARY KEY (zone, state)
) WITHOUT ROWID;
"""

_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def current_boot_id() -> str:
    """The kernel's id of this boot; the monotonic clock is only comparable within it."""
    try:
        return _BOOT_ID_FILE.read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(rule_firings)")}
    if "applied_at" not in columns:
        # A journal from before firings were marked: everything in it was acted on
        # (or is long past acting), so none of it is re-applied at start.
        conn.execute("ALTER TABLE rule_firings ADD COLUMN applied_at REAL")
        conn.execute("UPDATE rule_firings SET applied_at = fired_at")


def save(
    conn: sqlite3.Connection,
    firings: list[Firing],
    states: dict[StateKey, dict[str, Any]],
    now_wall: float,
    now_mono: float,
    boot_id: str,
) -> list[int]:
    """Record firings and changed states (run inside the journal writer).

    Returns the firings' row ids, for `mark_applied` once their actions are done.
    """
    firing_ids = [
        conn.execute(
            "INSERT INTO rule_firings (rule_id, key, phase, trigger_ids, actions, fired_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                firing.rule_id,
                firing.key,
                firing.phase,
                json.dumps(firing.trigger_ids),
                json.dumps([action_to_json(a) for a in firing.actions], ensure_ascii=False),
                now_wall,
            ),
        ).lastrowid
        or 0
        for firing in firings
    ]
    conn.executemany(
        "INSERT INTO rule_state (rule_id, key, state, saved_mono, boot_id) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (rule_id, key) DO UPDATE SET state = excluded.state,"
        " saved_mono = excluded.saved_mono, boot_id = excluded.boot_id",
        [
            (rule_id, key, json.dumps(state, ensure_ascii=False), now_mono, boot_id)
            for (rule_id, key), state in states.items()
        ],
    )
    return firing_ids


def mark_applied(conn: sqlite3.Connection, firing_ids: list[int], now_wall: float) -> None:
    """Note that every action of these firings was carried out."""
    conn.executemany(
        "UPDATE rule_firings SET applied_at = ? WHERE id = ?",
        [(now_wall, firing_id) for firing_id in firing_ids],
    )


@dataclass(frozen=True)
class UnappliedFiring:
    """A firing on disk whose actions may not all have run (the hub stopped between)."""

    firing_id: int
    rule_id: str
    fired_at: float
    firing: Firing


def unapplied_firings(conn: sqlite3.Connection) -> list[UnappliedFiring]:
    """Journaled firings not marked applied, oldest first."""
    rows = conn.execute(
        "SELECT id, rule_id, key, phase, trigger_ids, actions, fired_at FROM rule_firings"
        " WHERE applied_at IS NULL ORDER BY id"
    )
    return [
        UnappliedFiring(
            firing_id,
            rule_id,
            fired_at,
            Firing(
                rule_id,
                key,
                phase,
                tuple(json.loads(trigger_ids)),
                tuple(action_from_json(action) for action in json.loads(actions)),
            ),
        )
        for firing_id, rule_id, key, phase, trigger_ids, actions, fired_at in rows
    ]


def set_zone_state(
    conn: sqlite3.Connection, zone: str, state: str, value: Any, rule_id: str, now_wall: float
) -> None:
    conn.execute(
        "INSERT INTO zone_states (zone, state, value, rule_id, set_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (zone, state) DO UPDATE SET value = excluded.value,"
        " rule_id = excluded.rule_id, set_at = excluded.set_at",
        (zone, state, json.dumps(value, ensure_ascii=False), rule_id, now_wall),
    )


def load_states(
    conn: sqlite3.Connection, boot_id: str, now_mono: float
) -> dict[StateKey, dict[str, Any]]:
    """Saved states, with timers from an earlier boot moved onto this boot's clock."""
    states: dict[StateKey, dict[str, Any]] = {}
    rows = conn.execute("SELECT rule_id, key, state, saved_mono, boot_id FROM rule_state")
    for rule_id, key, text, saved_mono, saved_boot in rows:
        state = json.loads(text)
        if saved_boot != boot_id and state.get("deadline") is not None:
            remaining = max(0.0, state["deadline"] - saved_mono)
            state["deadline"] = now_mono + remaining
            logger.info(
                "rule %s/%s: timer resumes after reboot, %.0f s left", rule_id, key, remaining
            )
        states[(rule_id, key)] = state
    return states


def firings_between(conn: sqlite3.Connection, start: float, end: float) -> list[dict[str, Any]]:
    """Journaled firings with `start <= fired_at < end`, oldest first."""
    rows = conn.execute(
        "SELECT rule_id, key, phase, trigger_ids, actions, fired_at FROM rule_firings"
        " WHERE fired_at >= ? AND fired_at < ? ORDER BY id",
        (start, end),
    )
    return [
        {
            "rule_id": rule_id,
            "key": key,
            "phase": phase,
            "trigger_ids": json.loads(trigger_ids),
            "actions": json.loads(actions),
            "fired_at": fired_at,
        }
        for rule_id, key, phase, trigger_ids, actions, fired_at in rows
    ]
