"""The ticket service: numbering and calling, each change one journal transaction.

Numbers restart each service day, by the hall calendar's date; but only while the
hub's clock is synchronised: a box that booted with a wrong date must not restart
the numbers and issue ``A001`` twice in one day. Until the clock is trusted the
numbering carries on in the last service day, with a WARNING.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from hub.audit import AuditTrail
from hub.calendar import HallCalendar
from hub.clock import Clock
from hub.journal import Journal
from hub.tickets import schema, stats, store
from hub.tickets.settings import TicketsSection
from hub.tickets.store import Recorder, TicketRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")
Publish = Callable[[str, bytes], None]


class TicketService:
    """Queue numbering, calling and the queue's statistics for one hall."""

    def __init__(
        self,
        settings: TicketsSection,
        journal: Journal,
        clock: Clock,
        calendar: HallCalendar,
        audit: AuditTrail,
        announce_root: str,
    ) -> None:
        self.settings = settings
        self._journal = journal
        self._clock = clock
        self._calendar = calendar
        self._audit = audit
        self._announce_root = announce_root
        self._publish: Publish | None = None
        self._warned_unsynchronised = False
        self._announced_day: str | None = None

    async def open(self, publish: Publish | None = None) -> None:
        """Create the tables and the windows' rows; `publish` announces on MQTT."""
        self._publish = publish

        def prepare(conn: sqlite3.Connection) -> None:
            schema.create_tables(conn)
            store.ensure_windows(conn, self.settings)

        await self._journal.write(prepare)

    # -- printers --------------------------------------------------------------------

    async def issue(self, printer: str, request: TicketRequest) -> dict[str, Any]:
        """The ticket for a printer's request, committed before it is returned."""

        def work(rec: Recorder) -> dict[str, Any]:
            return store.issue(rec, self._service_day(rec), printer, request)

        ticket = await self._change(work)
        logger.debug("ticket %s for %s (%s)", ticket["ticket"], printer, request.request_id)
        return ticket

    async def book_appointment(
        self, code: str, category: str, slot_start: float, slot_end: float, actor: str
    ) -> None:
        """Register an appointment made on the phone, checked in later by its code."""
        await self._change(
            lambda rec: store.book_appointment(rec, code, category, slot_start, slot_end)
        )
        await self._audit.record(actor, "queue.appointment", category, {"slot": slot_start})

    # -- windows ---------------------------------------------------------------------

    async def replace_settings(self, settings: TicketsSection, actor: str) -> None:
        """Serve new categories and windows from now on.

        A new window starts closed; a window no longer assigned is closed, which
        finishes the ticket it was serving. Tickets already waiting keep their place.
        """
        if settings == self.settings:
            return
        dropped = [window for window in self.settings.windows if window not in settings.windows]

        def switch(rec: Recorder) -> list[str]:
            store.ensure_windows(rec.conn, settings)
            closed = [window for window in dropped if store.close_window(rec, window)]
            self.settings = settings  # inside the writer: the next change sees the new windows
            return closed

        closed = await self._change(switch)
        for window in closed:
            await self._audit.record(actor, "queue.closed", window, {"reason": "unassigned"})
        logger.info(
            "queue now has %d categories and %d windows (closed: %s)",
            len(settings.categories),
            len(settings.windows),
            ", ".join(closed) or "none",
        )

    async def set_window_state(self, window: str, state: str, actor: str) -> dict[str, Any]:
        result = await self._change(lambda rec: store.set_window_state(rec, window, state))
        await self._audit.record(actor, f"queue.{state}", window)
        return result

    async def call_next(self, window: str, actor: str) -> dict[str, Any] | None:
        result = await self._change(
            lambda rec: store.call_next(rec, self._current_day(rec), window)
        )
        await self._audit.record(actor, "queue.call", window, {"ticket": _label(result)})
        return result

    async def recall(self, window: str, actor: str) -> dict[str, Any]:
        result = await self._change(lambda rec: store.recall(rec, window))
        await self._audit.record(actor, "queue.recall", window, {"ticket": result["ticket"]})
        return result

    async def skip(self, window: str, actor: str) -> dict[str, Any]:
        result = await self._change(lambda rec: store.skip(rec, window))
        await self._audit.record(actor, "queue.skip", window, {"ticket": result["ticket"]})
        return result

    async def requeue(self, ticket: str, actor: str) -> dict[str, Any]:
        result = await self._change(lambda rec: store.requeue(rec, self._current_day(rec), ticket))
        await self._audit.record(actor, "queue.requeue", ticket)
        return result

    async def transfer(
        self, window: str, actor: str, *, to_category: str | None, to_window: str | None
    ) -> dict[str, Any]:
        result = await self._change(
            lambda rec: store.transfer(rec, self._current_day(rec), window, to_category, to_window)
        )
        detail = {"ticket": result["ticket"], "to_category": to_category, "to_window": to_window}
        await self._audit.record(actor, "queue.transfer", window, detail)
        return result

    # -- reading ---------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The live queue: waiting per category, windows, tickets issued today."""
        with self._journal.reading() as conn:
            return stats.queue_view(conn, self.settings)

    def statistics(self) -> dict[str, Any]:
        """Waiting and service times per category, window and hour, for today."""
        with self._journal.reading() as conn:
            return stats.queue_stats(conn, stats.hour_in(self._calendar.zone))

    # -- internals -------------------------------------------------------------------

    async def _change(self, work: Callable[[Recorder], T]) -> T:
        """Run `work` in one writer transaction, then announce what it decided."""
        now, synchronised = self._clock.wall(), self._clock.is_synchronised()
        announcements: list[tuple[str, dict[str, Any]]] = []

        def run(conn: sqlite3.Connection) -> T:
            rec = Recorder(conn, self._journal, now, synchronised, self.settings)
            result = work(rec)
            announcements.extend(rec.announcements)
            return result

        result = await self._journal.write(run)
        for channel, payload in announcements:
            self._announce(channel, payload)
        return result

    def _announce(self, channel: str, payload: dict[str, Any]) -> None:
        if self._publish is None:
            return
        topic = f"{self._announce_root}/{channel}"
        self._publish(topic, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def _service_day(self, rec: Recorder) -> str:
        """Today's service day for a new ticket; starts a new day when the date moved."""
        stored = store.stored_day(rec.conn)
        if not rec.clock_synchronised and stored is not None:
            if not self._warned_unsynchronised:
                self._warned_unsynchronised = True
                logger.warning(
                    "clock not synchronised: ticket numbers continue in service day %s "
                    "and do not restart until it is",
                    stored,
                )
            return stored
        self._warned_unsynchronised = False
        today = self._calendar.at_wall(rec.now).date().isoformat()
        if today != stored:
            if not rec.clock_synchronised:
                logger.warning("clock not synchronised: first service day taken as %s", today)
            store.start_day(rec, today)
            if today != self._announced_day:  # a refused request rolls back, then retries
                self._announced_day = today
                logger.info("service day %s begins; ticket numbers restart", today)
        return today

    @staticmethod
    def _current_day(rec: Recorder) -> str:
        return store.stored_day(rec.conn) or ""


def _label(ticket: dict[str, Any] | None) -> str | None:
    return None if ticket is None else str(ticket["ticket"])
