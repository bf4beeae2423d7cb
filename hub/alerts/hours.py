"""Opening hours: whether the hall is open, and so whether an alert pages now.

`OpeningHours` is the seam: anything that answers `is_open(wall)` fits, so the
hall calendar (holidays, special days) can replace `FixedHours` without touching
the alert lifecycle.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

from hub.alerts.settings import ClosedHours


class OpeningHours(Protocol):
    """Answers whether the hall is open at a moment."""

    def is_open(self, wall: float) -> bool:
        """True while the hall is open at `wall` (seconds since the epoch)."""
        ...


class AlwaysOpen:
    """No closed hours configured: every alert pages at once."""

    def is_open(self, wall: float) -> bool:
        return True


class FixedHours:
    """The same hours on the configured weekdays, in the hall's time zone."""

    def __init__(self, settings: ClosedHours) -> None:
        self._zone = ZoneInfo(settings.timezone)
        self._opens = dt.time.fromisoformat(settings.opens)
        self._closes = dt.time.fromisoformat(settings.closes)
        self._weekdays = frozenset(settings.weekdays)

    def is_open(self, wall: float) -> bool:
        local = dt.datetime.fromtimestamp(wall, self._zone)
        if local.weekday() not in self._weekdays:
            return False
        return self._opens <= local.time() < self._closes


class PagingPolicy:
    """Decides which severities page while the hall is closed."""

    def __init__(self, hours: OpeningHours, page_when_closed: frozenset[str]) -> None:
        self.hours = hours
        self._page_when_closed = page_when_closed

    @classmethod
    def from_settings(
        cls, settings: ClosedHours | None, hours: OpeningHours | None = None
    ) -> PagingPolicy:
        """From ``closed_hours:``; `hours` (a hall calendar, say) replaces its times.

        Without ``closed_hours:`` nothing is held, whatever `hours` says.
        """
        if settings is None:
            return cls(AlwaysOpen(), frozenset())
        return cls(hours or FixedHours(settings), frozenset(settings.page_when_closed))

    def pages_now(self, severity: str, wall: float) -> bool:
        return severity in self._page_when_closed or self.hours.is_open(wall)
