"""Live updates for the console: committed events and console changes, as SSE.

The journal's commit listener (the writer thread), a look at the alerts table
each second, and the console's change routes publish here; each open
``/api/events/stream`` gets every message after it connected.
A slow browser loses its oldest messages, never slows the hub: the page refetches
what it shows on every message, so a lost one only delays a refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from hub.events import Event
from hub.journal import Journal

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 200
KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
ALERTS_LOOK_SECONDS = 1.0
_CLOSED = None


class LiveFeedClosedError(Exception):
    """The live channel is closed (hub stopping, or closed on purpose)."""


class LiveFeed:
    """Fans messages out to every connected console page."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.accepting = True

    def follow(self, journal: Journal, loop: asyncio.AbstractEventLoop) -> None:
        """Publish every group of committed events, from the journal's writer thread."""
        self._loop = loop

        def committed(events: list[Event]) -> None:
            loop.call_soon_threadsafe(self._publish_events, events)

        journal.add_commit_listener(committed)

    async def watch_alerts(self, journal: Journal) -> None:
        """Announce alert changes that no device event carries (escalations, handset
        acknowledgements, holds lifted), by looking at the alerts table each second.

        It sleeps in real time, not on the hub's clock: it serves people watching a
        screen, and must not add sleepers to a test's ManualClock.
        """
        seen: list[tuple[Any, ...]] = []
        while True:
            await asyncio.sleep(ALERTS_LOOK_SECONDS)
            with journal.reading() as conn:
                now = conn.execute(
                    "SELECT state, COUNT(*), MAX(updated_at), SUM(count) FROM alerts"
                    " GROUP BY state ORDER BY state"
                ).fetchall()
            if now != seen and self._subscribers:
                self.publish("alerts", {"states": {row[0]: row[1] for row in now}})
            seen = now

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Send one message to every page (call from the event loop)."""
        frame = f"event: {topic}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(frame)

    def close_all(self, *, accept_new: bool) -> None:
        """End every open stream; with accept_new=False, refuse new ones too."""
        self.accepting = accept_new
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_CLOSED)
        logger.info("live channel: closed %d streams", len(self._subscribers))

    @property
    def pages(self) -> int:
        """How many streams are open now."""
        return len(self._subscribers)

    def reopen(self) -> None:
        """Take new streams again after close_all(accept_new=False)."""
        self.accepting = True

    async def stream(self) -> AsyncIterator[str]:
        """The SSE frames of one page, until it leaves or the feed closes it."""
        if not self.accepting:
            raise LiveFeedClosedError("live channel closed")
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            yield f"retry: {RETRY_MILLISECONDS}\nevent: hello\ndata: {{}}\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if frame is _CLOSED:
                    return
                yield frame
        finally:
            self._subscribers.discard(queue)

    def _publish_events(self, events: list[Event]) -> None:
        for event in events:
            summary = {"device_id": event.device_id, "kind": event.kind, "type": event.type}
            self.publish("event", {**summary, "lane": str(event.lane)})
