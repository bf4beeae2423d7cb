"""Errors of the queue-ticket service.

TicketError                  anything the ticket service refuses
├── UnknownCategoryError     a category letter the hall has not configured
├── UnknownWindowError       a window the hall has not configured
├── WindowStateError         a window action its state does not allow
├── TicketNotFoundError      no such ticket today
├── TicketStateError         a ticket action its state does not allow
└── AppointmentError         an appointment code that cannot be checked in
"""

from __future__ import annotations

from hub.errors import HallhubError


class TicketError(HallhubError):
    """A ticket or window request the service refuses; `reason` is a stable code."""

    reason = "refused"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class UnknownCategoryError(TicketError):
    reason = "unknown_category"

    def __init__(self, category: str) -> None:
        self.category = category
        super().__init__(f"no service category {category!r} in this hall")


class UnknownWindowError(TicketError):
    reason = "unknown_window"

    def __init__(self, window: str) -> None:
        self.window = window
        super().__init__(f"no window {window!r} in this hall")


class WindowStateError(TicketError):
    reason = "window_state"

    def __init__(self, window: str, state: str, action: str) -> None:
        self.window = window
        self.state = state
        super().__init__(f"window {window} is {state}; cannot {action}")


class TicketNotFoundError(TicketError):
    reason = "no_ticket"


class TicketStateError(TicketError):
    reason = "ticket_state"

    def __init__(self, ticket: str, state: str, action: str) -> None:
        self.ticket = ticket
        self.state = state
        super().__init__(f"ticket {ticket} is {state}; cannot {action}")


class AppointmentError(TicketError):
    reason = "appointment"
