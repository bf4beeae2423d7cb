"""The city's side of the command channel: commands queued per hub, and the replies.

A hub cannot be called (it sits behind NAT), so it holds a long poll open and the
city answers it with whatever is queued. A command stays pending until the hub
posts its reply, so a hub that crashes mid-command is given it again. The queue
lives in the receiver's own store (`sync.command_store`, SQLite or PostgreSQL), so
a restart of the receiver forgets nothing: pending commands are handed out after
it, answers stay readable, and so does the configuration version each hub last
reported. A hub keeps at most `MAX_PENDING_PER_HUB` pending commands, and the
answers of its newest `KEEP_ANSWERED` commands; older answers are deleted.

The store is the truth. A long poll reads it, then sleeps on an in-process nudge
that a command queued through this receiver sets at once; it also reads the store
again every `STORE_RECHECK_SECONDS`, for a command queued through another receiver
sharing the database.

Command ids are random, never a counter: a hub remembers the answers it gave by
id, and a counter starting again at 1 (a new database, a restored backup) would
make it replay an old answer to a new command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from hub.clock import Clock
from sync.command_store import Command, CommandTables
from sync.keys import HUB_ID_PATTERN

logger = logging.getLogger(__name__)

COMMAND_TYPES = ("configure", "query_state", "query_events")
MAX_WAIT_SECONDS = 60.0
MAX_PENDING_PER_HUB = 100
KEEP_ANSWERED = 1000
WAIT_SLICE_SECONDS = 0.5
STORE_RECHECK_SECONDS = 5.0
COMMAND_ID_PATTERN = re.compile(r"c-[0-9a-f]{16}")


class CommandQueue:
    """Commands per hub in the receiver's store; all methods run on its event loop."""

    def __init__(
        self, tables: CommandTables, clock: Clock, *, keep_answered: int = KEEP_ANSWERED
    ) -> None:
        self._tables = tables
        self._clock = clock
        self._keep_answered = keep_answered
        # One event per hub that polled since its last command; set and dropped when
        # a command is queued, so every poll holding it wakes and later ones take a
        # fresh one. Only the nudge: what is pending is always read from the store.
        self._nudges: dict[str, asyncio.Event] = {}

    async def enqueue(self, hub_id: str, type_: str, payload: dict[str, Any]) -> Command:
        """Store a command for `hub_id` and wake its long poll.

        Raises `ValueError` for an unknown type or a hub id no hub can have, and
        `CommandQueueFull` when the hub already has `MAX_PENDING_PER_HUB` pending.
        """
        if type_ not in COMMAND_TYPES:
            raise ValueError(f"type must be one of {', '.join(COMMAND_TYPES)}")
        if not HUB_ID_PATTERN.fullmatch(hub_id):
            raise ValueError(f"hub id must match {HUB_ID_PATTERN.pattern}")

        command = Command(f"c-{secrets.token_hex(8)}", hub_id, type_, payload)
        queued_at = self._clock.wall()
        await asyncio.to_thread(self._tables.add, command, queued_at, MAX_PENDING_PER_HUB)

        nudge = self._nudges.pop(hub_id, None)
        if nudge is not None:
            nudge.set()
        logger.info("command %s (%s) queued for hub %s", command.command_id, type_, hub_id)
        return command

    async def wait_for(
        self, hub_id: str, wait: float, give_up: Callable[[], Awaitable[bool]]
    ) -> list[Command]:
        """The hub's pending commands, waiting up to `wait` seconds for one to arrive.

        The wait is cut short, checked every `WAIT_SLICE_SECONDS`, once `give_up`
        says so: the hub hung up, or the receiver is shutting down.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait, MAX_WAIT_SECONDS)
        while True:
            # Taken before the read: a command stored after the read sets this one.
            nudge = self._nudges.setdefault(hub_id, asyncio.Event())
            pending = await asyncio.to_thread(self._tables.pending, hub_id)
            if pending or loop.time() >= deadline or await give_up():
                return pending

            recheck_at = min(deadline, loop.time() + STORE_RECHECK_SECONDS)
            await _sleep_on(nudge, recheck_at, give_up)

    async def answer(self, hub_id: str, command_id: str, reply: dict[str, Any]) -> Command:
        """Record the hub's reply; the command is no longer pending.

        Raises `KeyError` when the hub has no such command.
        """
        if not COMMAND_ID_PATTERN.fullmatch(command_id):
            raise KeyError(command_id)
        command = await asyncio.to_thread(
            self._tables.answer,
            hub_id,
            command_id,
            reply,
            self._clock.wall(),
            self._keep_answered,
        )
        logger.info("hub %s answered command %s", hub_id, command_id)
        return command

    async def get(self, command_id: str) -> Command | None:
        """A command by id, answered or not (an answer kept within the bound)."""
        if not COMMAND_ID_PATTERN.fullmatch(command_id):
            return None
        return await asyncio.to_thread(self._tables.get, command_id)

    async def active_config(self, hub_id: str) -> str | None:
        """The configuration version the hub last reported active."""
        return await asyncio.to_thread(self._tables.active_config, hub_id)

    async def report_active(self, hub_id: str, version: str | None) -> None:
        """Record the version the hub says it runs, as it starts or reconnects."""
        await asyncio.to_thread(self._tables.report_active, hub_id, version, self._clock.wall())
        logger.info("hub %s runs configuration %s", hub_id, version or "(none)")


async def _sleep_on(
    nudge: asyncio.Event, until: float, give_up: Callable[[], Awaitable[bool]]
) -> None:
    """Return once `nudge` is set, the loop's clock reaches `until`, or `give_up`."""
    loop = asyncio.get_running_loop()
    while not nudge.is_set() and loop.time() < until and not await give_up():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(WAIT_SLICE_SECONDS, until - loop.time())):
                await nudge.wait()
