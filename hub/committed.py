"""Committed events on their way to the registry and the rules: alarms go first.

Under a burst of telemetry thousands of readings can be committed ahead of a toilet
call; the call must not wait behind them. Events are kept in two queues, alarms and
the rest, each in commit order, and an alarm is always taken before anything else.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from hub.events import Event, Lane


class CommittedBacklog:
    """Events committed but not yet handled; alarms first, each lane in its own order."""

    def __init__(self, handled: dict[Lane, int]) -> None:
        self.handled = dict(handled)  # the highest seq handled per lane
        self._alarms: collections.deque[Event] = collections.deque()
        self._others: collections.deque[Event] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._alarms or self._others)

    def add(self, events: Iterable[Event]) -> None:
        """Queue newly committed events."""
        for event in events:
            queue = self._alarms if event.lane is Lane.ALARM else self._others
            queue.append(event)

    def rules_due(self, event: Event) -> bool:
        """Whether the rules have yet to see `event`.

        The rules' catch-up at start may already have applied an event committed just
        before the live feed began; the registry must still hear of it, the rules not.
        """
        return event.seq > self.handled.get(event.lane, 0)

    def pop(self) -> Event:
        """The next event to handle: the oldest alarm if any, else the oldest other event."""
        return self._alarms.popleft() if self._alarms else self._others.popleft()

    def mark_handled(self, event: Event) -> None:
        """Note that `event` has been handled, so it is skipped if seen again."""
        self.handled[event.lane] = max(self.handled.get(event.lane, 0), event.seq)
