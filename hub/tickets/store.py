"""Queue state in SQL: numbering, the order of a queue, and the window actions.

Every function here runs inside one journal writer transaction (`Journal.write`)
and reports what happened through a `Recorder`, which journals the ticket events
in that same transaction and collects the announcements to publish after commit.
So a ticket, its number and its event are committed together or not at all.

A queue's order: tickets sent to one window come first at that window; then
appointments checked in on time once their slot has started; then the green
channel; then everyone else; within each, by the time they joined the queue.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

from hub.events import Lane, Observation, hub_event_id
from hub.journal import Journal
from hub.tickets.errors import (
    AppointmentError,
    TicketError,
    TicketNotFoundError,
    TicketStateError,
    UnknownCategoryError,
    UnknownWindowError,
    WindowStateError,
)
from hub.tickets.settings import TicketsSection

WAITING, CALLED, SERVED, SKIPPED, EXPIRED = "waiting", "called", "served", "skipped", "expired"
OPEN, PAUSED, CLOSED = "open", "paused", "closed"
EVENT_KIND = "queue"

QUEUE_ORDER = (
    "(target_window IS NULL),"
    " CASE WHEN on_time = 1 AND slot_start <= :now THEN 0"
    " WHEN green_channel = 1 THEN 1 ELSE 2 END,"
    " queued_at, ticket_id"
)


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """A printer's request for a ticket."""

    request_id: str
    category: str | None
    green_channel: bool = False
    appointment_code: str | None = None


@dataclass(slots=True)
class Recorder:
    """Journals ticket events in the running transaction; gathers announcements."""

    conn: sqlite3.Connection
    journal: Journal
    now: float
    clock_synchronised: bool
    settings: TicketsSection
    announcements: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def event(self, source: str, type_: str, data: dict[str, Any]) -> None:
        observation = Observation(
            event_id=hub_event_id(),
            lane=Lane.TICKET,
            device_id=source,
            kind=EVENT_KIND,
            type=type_,
            data=data,
            received_at=self.now,
            clock_synchronised=self.clock_synchronised,
        )
        self.journal.insert_event(self.conn, observation)

    def announce(self, channel: str, payload: dict[str, Any]) -> None:
        self.announcements.append((channel, payload))


# -- the service day -------------------------------------------------------------------


def stored_day(conn: sqlite3.Connection) -> str | None:
    """The service day numbers are counted in, or None before the first ticket."""
    row = conn.execute("SELECT value FROM ticket_days WHERE key = 'service_day'").fetchone()
    return str(row[0]) if row else None


def start_day(rec: Recorder, day: str) -> None:
    """Begin a new service day: numbers restart, yesterday's open tickets expire."""
    expired = rec.conn.execute(
        "UPDATE tickets SET state = ?, finished_at = ? WHERE state IN (?, ?) AND service_day != ?",
        (EXPIRED, rec.now, WAITING, CALLED, day),
    ).rowcount
    rec.conn.execute("UPDATE queue_windows SET serving = NULL")
    rec.conn.execute(
        "INSERT INTO ticket_days (key, value) VALUES ('service_day', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (day,),
    )
    rec.event("queue", "service_day_started", {"service_day": day, "expired": expired})


# -- issuing ---------------------------------------------------------------------------


def issue(rec: Recorder, day: str, printer: str, request: TicketRequest) -> dict[str, Any]:
    """The ticket for `request`: the one already given for its id, or a new number."""
    given = rec.conn.execute(
        "SELECT * FROM tickets WHERE printer = ? AND request_id = ?",
        (printer, request.request_id),
    ).fetchone()
    if given is not None:
        return {**ticket_json(given), "repeat": True}

    category, slot_start, on_time = _checked_in(rec, request)
    if category not in rec.settings.categories:
        raise UnknownCategoryError(category)

    number = rec.conn.execute(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM tickets WHERE service_day = ? AND category = ?",
        (day, category),
    ).fetchone()[0]
    label = f"{category}{number:03d}"
    ticket_id = _insert_ticket(rec, day, printer, request, category, number, label, slot_start)
    if on_time:
        rec.conn.execute("UPDATE tickets SET on_time = 1 WHERE ticket_id = ?", (ticket_id,))
    if request.appointment_code is not None:
        rec.conn.execute(
            "UPDATE appointments SET ticket_id = ? WHERE code = ?",
            (ticket_id, request.appointment_code),
        )

    row = _ticket(rec.conn, ticket_id)
    rec.event(printer, "ticket_issued", {**ticket_json(row), "request_id": request.request_id})
    push_near(rec, day, category)
    return {**ticket_json(row), "repeat": False}


def _checked_in(rec: Recorder, request: TicketRequest) -> tuple[str, float | None, bool]:
    """Category, slot start and whether on time; a late appointment is an ordinary ticket."""
    if request.appointment_code is None:
        if request.category is None:
            raise UnknownCategoryError("")
        return request.category, None, False
    booked = rec.conn.execute(
        "SELECT category, slot_start, ticket_id FROM appointments WHERE code = ?",
        (request.appointment_code,),
    ).fetchone()
    if booked is None:
        raise AppointmentError("no appointment with this code")
    if booked["ticket_id"] is not None:
        raise AppointmentError("this appointment is already checked in")
    on_time = rec.now <= booked["slot_start"] + rec.settings.appointment_grace
    return booked["category"], booked["slot_start"], on_time


def _insert_ticket(
    rec: Recorder,
    day: str,
    printer: str,
    request: TicketRequest,
    category: str,
    number: int,
    label: str,
    slot_start: float | None,
) -> int:
    cursor = rec.conn.execute(
        "INSERT INTO tickets (ticket_ref, service_day, category, number, label, printer,"
        " request_id, green_channel, appointment_code, slot_start, issued_at, queue_category,"
        " queued_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            uuid.uuid4().hex,
            day,
            category,
            number,
            label,
            printer,
            request.request_id,
            int(request.green_channel),
            request.appointment_code,
            slot_start,
            rec.now,
            category,
            rec.now,
            WAITING,
        ),
    )
    return int(cursor.lastrowid or 0)


def book_appointment(
    rec: Recorder, code: str, category: str, slot_start: float, slot_end: float
) -> None:
    """Record an appointment booked on the phone, to be checked in by its code."""
    if category not in rec.settings.categories:
        raise UnknownCategoryError(category)
    rec.conn.execute(
        "INSERT INTO appointments (code, category, slot_start, slot_end, booked_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET category = excluded.category,"
        " slot_start = excluded.slot_start, slot_end = excluded.slot_end"
        " WHERE ticket_id IS NULL",
        (code, category, slot_start, slot_end, rec.now),
    )


# -- silent calling --------------------------------------------------------------------


def push_near(rec: Recorder, day: str, category: str) -> None:
    """A push event for each ticket newly among the first few of `category`'s queue."""
    rows = rec.conn.execute(
        f"SELECT ticket_id, ticket_ref, label, near_pushed FROM tickets"
        f" WHERE service_day = :day AND state = 'waiting' AND queue_category = :category"
        f" ORDER BY {QUEUE_ORDER} LIMIT :depth",
        {"day": day, "category": category, "now": rec.now, "depth": rec.settings.silent_call_depth},
    ).fetchall()
    for position, row in enumerate(rows, start=1):
        if row["near_pushed"]:
            continue
        rec.conn.execute("UPDATE tickets SET near_pushed = 1 WHERE ticket_id = ?", (row[0],))
        # A reference only: the city looks up how to reach the citizen.
        notice = {"ticket_ref": row["ticket_ref"], "ticket": row["label"], "position": position}
        rec.event("queue", "ticket_near", notice)
        rec.announce("near", notice)


# -- windows ---------------------------------------------------------------------------


def ensure_windows(conn: sqlite3.Connection, settings: TicketsSection) -> None:
    """Give every configured window a row; a new window starts closed."""
    conn.executemany(
        "INSERT OR IGNORE INTO queue_windows (window, state) VALUES (?, ?)",
        [(window, CLOSED) for window in settings.windows],
    )


def set_window_state(rec: Recorder, window: str, state: str) -> dict[str, Any]:
    """Open, pause or close `window`; closing finishes the ticket it was serving."""
    _window(rec, window)
    if state == CLOSED:
        _finish_serving(rec, window, SERVED)
    rec.conn.execute("UPDATE queue_windows SET state = ? WHERE window = ?", (state, window))
    rec.event(window, "window_state", {"window": window, "state": state})
    return window_json(rec, window)


def close_window(rec: Recorder, window: str) -> bool:
    """Close `window` unless it is closed already; True if it was open or paused."""
    state, _ = _window(rec, window)
    if state == CLOSED:
        return False
    set_window_state(rec, window, CLOSED)
    return True


def call_next(rec: Recorder, day: str, window: str) -> dict[str, Any] | None:
    """Finish the window's ticket and call the next one for it, or None if nobody waits."""
    state, _ = _window(rec, window)
    if state != OPEN:
        raise WindowStateError(window, state, "call the next ticket")
    _finish_serving(rec, window, SERVED)

    categories = rec.settings.windows[window].categories
    marks = ",".join("?" * len(categories))
    row = rec.conn.execute(
        f"SELECT * FROM tickets WHERE service_day = ? AND state = 'waiting'"
        f" AND (target_window = ? OR (target_window IS NULL AND queue_category IN ({marks})))"
        f" ORDER BY {QUEUE_ORDER.replace(':now', '?')} LIMIT 1",
        (day, window, *categories, rec.now),
    ).fetchone()
    if row is None:
        return None

    rec.conn.execute(
        "UPDATE tickets SET state = ?, window = ?, called_at = ?, target_window = NULL,"
        " first_called_at = COALESCE(first_called_at, ?), calls = calls + 1 WHERE ticket_id = ?",
        (CALLED, window, rec.now, rec.now, row["ticket_id"]),
    )
    rec.conn.execute(
        "UPDATE queue_windows SET serving = ? WHERE window = ?", (row["ticket_id"], window)
    )
    called = _ticket(rec.conn, row["ticket_id"])
    _announce_call(rec, called, window, "ticket_called")
    push_near(rec, day, row["queue_category"])
    return ticket_json(called)


def recall(rec: Recorder, window: str) -> dict[str, Any]:
    """Call the window's current ticket again."""
    serving = _serving(rec, window, "recall")
    rec.conn.execute(
        "UPDATE tickets SET calls = calls + 1 WHERE ticket_id = ?", (serving["ticket_id"],)
    )
    called = _ticket(rec.conn, serving["ticket_id"])
    _announce_call(rec, called, window, "ticket_recalled")
    return ticket_json(called)


def skip(rec: Recorder, window: str) -> dict[str, Any]:
    """过号: the citizen did not come; the ticket may be re-queued once."""
    serving = _serving(rec, window, "skip")
    _finish_serving(rec, window, SKIPPED)
    return ticket_json(_ticket(rec.conn, serving["ticket_id"]))


def requeue(rec: Recorder, day: str, label: str) -> dict[str, Any]:
    """Put a skipped ticket back at the end of its queue; only once per ticket."""
    row = rec.conn.execute(
        "SELECT * FROM tickets WHERE service_day = ? AND label = ?", (day, label)
    ).fetchone()
    if row is None:
        raise TicketNotFoundError(f"no ticket {label} today")
    if row["state"] != SKIPPED or row["requeued"]:
        state = "already re-queued once" if row["requeued"] else row["state"]
        raise TicketStateError(label, state, "re-queue")

    rec.conn.execute(
        "UPDATE tickets SET state = ?, requeued = 1, queued_at = ?, window = NULL,"
        " near_pushed = 0 WHERE ticket_id = ?",
        (WAITING, rec.now, row["ticket_id"]),
    )
    rec.event("queue", "ticket_requeued", {"ticket": label, "category": row["queue_category"]})
    push_near(rec, day, row["queue_category"])
    return ticket_json(_ticket(rec.conn, row["ticket_id"]))


def transfer(
    rec: Recorder, day: str, window: str, to_category: str | None, to_window: str | None
) -> dict[str, Any]:
    """Send the window's ticket to another category or window; it keeps its place."""
    if to_category is None and to_window is None:
        raise TicketError("give a category or a window to transfer the ticket to")
    if to_category is not None and to_category not in rec.settings.categories:
        raise UnknownCategoryError(to_category)
    if to_window is not None and to_window not in rec.settings.windows:
        raise UnknownWindowError(to_window)
    serving = _serving(rec, window, "transfer")
    _finish_serving(rec, window, "transferred")

    category = to_category or serving["queue_category"]
    # Queued by issue time: a transferred citizen does not start again at the back.
    rec.conn.execute(
        "UPDATE tickets SET state = ?, queue_category = ?, target_window = ?, queued_at = ?,"
        " window = NULL WHERE ticket_id = ?",
        (WAITING, category, to_window, serving["issued_at"], serving["ticket_id"]),
    )
    rec.event(
        window,
        "ticket_transferred",
        {"ticket": serving["label"], "to_category": category, "to_window": to_window},
    )
    push_near(rec, day, category)
    return ticket_json(_ticket(rec.conn, serving["ticket_id"]))


def _finish_serving(rec: Recorder, window: str, outcome: str) -> None:
    """End the window's current ticket (served, skipped or transferred)."""
    row = rec.conn.execute(
        "SELECT t.* FROM queue_windows w JOIN tickets t ON t.ticket_id = w.serving"
        " WHERE w.window = ? AND t.state = ?",
        (window, CALLED),
    ).fetchone()
    rec.conn.execute("UPDATE queue_windows SET serving = NULL WHERE window = ?", (window,))
    if row is None:
        return
    rec.conn.execute(
        "INSERT INTO ticket_services (ticket_id, window, category, called_at, finished_at,"
        " outcome) VALUES (?, ?, ?, ?, ?, ?)",
        (row["ticket_id"], window, row["queue_category"], row["called_at"], rec.now, outcome),
    )
    if outcome not in (SERVED, SKIPPED):
        return  # the caller moves the ticket on and reports it
    rec.conn.execute(
        "UPDATE tickets SET state = ?, finished_at = ? WHERE ticket_id = ?",
        (outcome, rec.now, row["ticket_id"]),
    )
    service_s = round(rec.now - row["called_at"], 3)
    rec.event(
        window,
        f"ticket_{outcome}",
        {"ticket": row["label"], "window": window, "service_s": service_s},
    )


def _announce_call(rec: Recorder, ticket: sqlite3.Row, window: str, type_: str) -> None:
    wait_s = round((ticket["first_called_at"] or rec.now) - ticket["issued_at"], 3)
    call = {"ticket": ticket["label"], "window": window, "category": ticket["queue_category"]}
    rec.event(window, type_, {**call, "calls": ticket["calls"], "wait_s": wait_s})
    rec.announce("calls", {**call, "recall": type_ == "ticket_recalled"})


def _window(rec: Recorder, window: str) -> tuple[str, int | None]:
    if window not in rec.settings.windows:
        raise UnknownWindowError(window)
    row = rec.conn.execute(
        "SELECT state, serving FROM queue_windows WHERE window = ?", (window,)
    ).fetchone()
    return (str(row["state"]), row["serving"]) if row else (CLOSED, None)


def _serving(rec: Recorder, window: str, action: str) -> sqlite3.Row:
    _, serving = _window(rec, window)
    if serving is None:
        raise TicketNotFoundError(f"window {window} is serving no ticket; cannot {action}")
    return _ticket(rec.conn, serving)


def _ticket(conn: sqlite3.Connection, ticket_id: int) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute(
        "SELECT * FROM tickets WHERE ticket_id = ?", (ticket_id,)
    ).fetchone()
    return row


# -- reading ---------------------------------------------------------------------------


def ticket_json(row: sqlite3.Row) -> dict[str, Any]:
    """A ticket as the API and the printers see it."""
    return {
        "ticket": row["label"],
        "ticket_ref": row["ticket_ref"],
        "category": row["category"],
        "queue_category": row["queue_category"],
        "number": row["number"],
        "service_day": row["service_day"],
        "state": row["state"],
        "window": row["window"],
        "green_channel": bool(row["green_channel"]),
        "appointment": row["appointment_code"] is not None,
        "issued_at": row["issued_at"],
    }


def window_json(rec: Recorder, window: str) -> dict[str, Any]:
    row = rec.conn.execute(
        "SELECT w.state, t.label FROM queue_windows w"
        " LEFT JOIN tickets t ON t.ticket_id = w.serving WHERE w.window = ?",
        (window,),
    ).fetchone()
    return {
        "window": window,
        "state": row["state"],
        "serving": row["label"],
        "categories": list(rec.settings.windows[window].categories),
    }
