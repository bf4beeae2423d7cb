"""The audit trail: who changed what in the hall, kept apart from device events.

Every change that hall IT, a supervisor or a crew makes through the console, the
API or the CLI is recorded here: commissioning a device, acknowledging an alert,
closing a follow-up task, editing a rule. Rows are only ever appended; retention
removes whole rows past their configured age (at least 6 months), never edits one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.clock import Clock, SystemClock
from hub.journal import Journal

logger = logging.getLogger(__name__)

TABLES = (
    """CREATE TABLE IF NOT EXISTS audit_trail (
        entry_id  INTEGER PRIMARY KEY,
        at        REAL NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT NOT NULL,
        detail    TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_trail_by_time ON audit_trail (at)",
)


@dataclass(frozen=True)
class AuditEntry:
    """One recorded change."""

    entry_id: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


class AuditTrail:
    """Append-only record of changes, stored in the journal file."""

    def __init__(self, journal: Journal, clock: Clock) -> None:
        self._journal = journal
        self._clock = clock

    async def open(self) -> None:
        """Create the table if this journal does not have it yet."""

        def create(conn: sqlite3.Connection) -> None:
            for statement in TABLES:
                conn.execute(statement)

        await self._journal.write(create)

    async def record(
        self, actor: str, action: str, target: str, detail: dict[str, Any] | None = None
    ) -> int:
        """Append one entry and return its id once committed.

        `detail` must not hold secrets or citizen identifiers: it is shown to
        anyone allowed to read the trail.
        """
        row = (self._clock.wall(), actor, action, target, json.dumps(detail or {}))

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO audit_trail (at, actor, action, target, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )
            return int(cursor.lastrowid or 0)

        entry_id = await self._journal.write(insert)
        logger.info("audit: %s %s %s", actor, action, target)
        return entry_id

    def entries(self, since: float = 0.0, limit: int = 200) -> list[AuditEntry]:
        """The newest entries at or after `since`, newest first."""
        with self._journal.reading() as conn:
            rows = conn.execute(
                "SELECT entry_id, at, actor, action, target, detail FROM audit_trail"
                " WHERE at >= ? ORDER BY entry_id DESC LIMIT ?",
                (since, limit),
            ).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def record_beside_the_hub(
    journal_path: Path,
    hub_id: str,
    entry: tuple[str, str, str],
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one (actor, action, target) entry from a command run beside the hub.

    The journal is opened for this one write: WAL lets it sit beside a running hub,
    and a journal that does not exist yet is created whole, as the hub would.
    """
    journal = Journal(journal_path, hub_id)
    journal.open()
    try:
        trail = AuditTrail(journal, SystemClock())

        async def append() -> None:
            await trail.open()
            await trail.record(*entry, detail)

        asyncio.run(append())
    finally:
        journal.close()
