"""Queue tickets and calling: numbering, printers' requests, windows, announcements."""

from hub.tickets.desk import TicketDesk, desk_connection
from hub.tickets.errors import TicketError
from hub.tickets.service import TicketService
from hub.tickets.settings import TicketsSection
from hub.tickets.store import TicketRequest

__all__ = [
    "TicketDesk",
    "TicketError",
    "TicketRequest",
    "TicketService",
    "TicketsSection",
    "desk_connection",
]
