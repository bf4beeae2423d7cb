"""The ticket tables, kept in the journal file so a ticket and its event commit together.

``UNIQUE (service_day, category, number)`` is the last line of defence against a
number issued twice; ``UNIQUE (printer, request_id)`` makes a printer's retry of
the same request find the ticket it was already given.
"""

from __future__ import annotations

import sqlite3

TABLES = (
    """CREATE TABLE IF NOT EXISTS ticket_days (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tickets (
        ticket_id         INTEGER PRIMARY KEY,
        ticket_ref        TEXT NOT NULL UNIQUE,
        service_day       TEXT NOT NULL,
        category          TEXT NOT NULL,
        number            INTEGER NOT NULL,
        label             TEXT NOT NULL,
        printer           TEXT NOT NULL,
        request_id        TEXT NOT NULL,
        green_channel     INTEGER NOT NULL DEFAULT 0,
        appointment_code  TEXT,
        slot_start        REAL,
        on_time           INTEGER NOT NULL DEFAULT 0,
        issued_at         REAL NOT NULL,
        queue_category    TEXT NOT NULL,
        target_window     TEXT,
        queued_at         REAL NOT NULL,
        state             TEXT NOT NULL,
        window            TEXT,
        first_called_at   REAL,
        called_at         REAL,
        finished_at       REAL,
        calls             INTEGER NOT NULL DEFAULT 0,
        requeued          INTEGER NOT NULL DEFAULT 0,
        near_pushed       INTEGER NOT NULL DEFAULT 0,
        UNIQUE (service_day, category, number),
        UNIQUE (printer, request_id)
    )""",
    "CREATE INDEX IF NOT EXISTS tickets_waiting ON tickets (service_day, state, queue_category)",
    """CREATE TABLE IF NOT EXISTS ticket_services (
        ticket_id    INTEGER NOT NULL,
        window       TEXT NOT NULL,
        category     TEXT NOT NULL,
        called_at    REAL NOT NULL,
        finished_at  REAL NOT NULL,
        outcome      TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS queue_windows (
        window   TEXT PRIMARY KEY,
        state    TEXT NOT NULL,
        serving  INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS appointments (
        code        TEXT PRIMARY KEY,
        category    TEXT NOT NULL,
        slot_start  REAL NOT NULL,
        slot_end    REAL NOT NULL,
        booked_at   REAL NOT NULL,
        ticket_id   INTEGER
    )""",
)


def create_tables(conn: sqlite3.Connection) -> None:
    """Create the ticket tables if this journal does not have them yet."""
    for statement in TABLES:
        conn.execute(statement)
