"""The alerts package's tables, added to the journal file at start.

The ``alerts`` table itself is in the journal's SCHEMA; the columns the lifecycle,
escalation and silences need are added here (``ALTER TABLE ... ADD COLUMN``), so a
journal written by an older hub opens unchanged and gains them.
"""

from __future__ import annotations

import sqlite3

ALERT_COLUMNS = {
    "kind": "TEXT NOT NULL DEFAULT ''",
    "zone": "TEXT NOT NULL DEFAULT ''",
    "floor": "INTEGER",
    "latched": "INTEGER NOT NULL DEFAULT 0",
    "condition_active": "INTEGER NOT NULL DEFAULT 1",
    "hold_reason": "TEXT",
    "notified_at": "REAL",
    "escalation_step": "INTEGER NOT NULL DEFAULT 0",
    "escalate_at": "REAL",
    "suppressed_at": "REAL",
    "updated_at": "REAL",
}

TABLES = (
    """CREATE TABLE IF NOT EXISTS alert_transitions (
        alert_key  TEXT NOT NULL,
        at         REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS alert_transitions_by_key ON alert_transitions (alert_key, at)",
    """CREATE TABLE IF NOT EXISTS alert_silences (
        silence_id  INTEGER PRIMARY KEY,
        scope       TEXT NOT NULL CHECK (scope IN ('device', 'zone', 'kind')),
        value       TEXT NOT NULL,
        reason      TEXT NOT NULL,
        created_by  TEXT NOT NULL,
        created_at  REAL NOT NULL,
        expires_at  REAL NOT NULL,
        ended_at    REAL
    )""",
    """CREATE TABLE IF NOT EXISTS alert_deliveries (
        delivery_id  INTEGER PRIMARY KEY,
        alert_id     INTEGER,
        event        TEXT NOT NULL,
        team         TEXT NOT NULL,
        channel      TEXT NOT NULL,
        target       TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('delivered', 'failed')),
        attempts     INTEGER NOT NULL,
        last_error   TEXT,
        queued_at    REAL NOT NULL,
        finished_at  REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS alert_deliveries_by_alert ON alert_deliveries (alert_id)",
    """CREATE TABLE IF NOT EXISTS alert_ack_refusals (
        refusal_id  INTEGER PRIMARY KEY,
        at          REAL NOT NULL,
        source      TEXT NOT NULL,
        sender      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        raw         TEXT NOT NULL
    )""",
)


def migrate(conn: sqlite3.Connection) -> None:
    """Add what the alerts package needs; safe to run on every start."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(alerts)")}
    for name, declaration in ALERT_COLUMNS.items():
        if name not in present:
            conn.execute(f"ALTER TABLE alerts ADD COLUMN {name} {declaration}")
    for statement in TABLES:
        conn.execute(statement)
