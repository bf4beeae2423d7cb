"""A ticket service on a real journal file, driven by a manual clock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.audit import AuditTrail
from hub.calendar import HallCalendar
from hub.clock import ManualClock
from hub.journal import Journal
from hub.tickets import TicketRequest, TicketService, TicketsSection

# 2026-03-02 (a Monday, a working day) 09:00 in Asia/Shanghai.
MONDAY_0900 = 1772413200.0

TICKETS = {
    "categories": {"A": {"name": "综合受理"}, "B": {"name": "Tax"}, "C": {"name": "Police"}},
    "windows": {"W01": {"categories": ["A", "B"]}, "W02": {"categories": ["B"]}},
}


@dataclass
class Desk:
    """The ticket service under test with its journal, clock and audit trail."""

    service: TicketService
    journal: Journal
    clock: ManualClock
    audit: AuditTrail
    requests: int = 0

    async def take(self, category: str | None = "A", printer: str = "p1", **extra: Any) -> str:
        """A new request from `printer`; returns the ticket's number."""
        self.requests += 1
        request = TicketRequest(f"req-{self.requests}", category, **extra)
        return str((await self.service.issue(printer, request))["ticket"])

    def rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self.journal.reading() as conn:
            return conn.execute(sql, args).fetchall()

    def events(self, type_: str) -> list[dict[str, Any]]:
        import json

        rows = self.rows("SELECT data FROM events WHERE type = ? ORDER BY seq", type_)
        return [json.loads(row[0]) for row in rows]


@asynccontextmanager
async def ticket_desk(
    state_dir: Path, *, synchronised: bool = True, wall: float = MONDAY_0900, **settings: Any
) -> AsyncIterator[Desk]:
    journal = Journal(state_dir / "journal.sqlite3", "hall-test")
    journal.open()
    clock = ManualClock(wall=wall, synchronised=synchronised)
    audit = AuditTrail(journal, clock)
    await audit.open()
    service = TicketService(
        TicketsSection.model_validate({**TICKETS, **settings}),
        journal,
        clock,
        HallCalendar(),
        audit,
        announce_root="hall/_hub/queue",
    )
    await service.open()
    try:
        yield Desk(service, journal, clock, audit)
    finally:
        journal.close()
