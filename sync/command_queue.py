"""The city's side of the command channel: commands queued per hub, and the replies.

A hub cannot be called (it sits behind NAT), so it holds a long poll open and the
city answers it with whatever is queued. A command stays pending until the hub
posts its reply, so a hub that crashes mid-command is given it again. The reference
receiver keeps the queue in memory: a restart of the receiver forgets it, and the
city sends again what it still wants. Command ids are random, never a counter: a
hub remembers the answers it gave by id, and a counter restarting at 1 would make
it replay an old answer to a new command.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

COMMAND_TYPES = ("configure", "query_state", "query_events")
MAX_WAIT_SECONDS = 60.0
MAX_PENDING_PER_HUB = 100
WAIT_SLICE_SECONDS = 0.5


@dataclass(slots=True)
class Command:
    """One thing the city asks a hub to do, and the hub's answer once it came."""

    command_id: str
    hub_id: str
    type: str
    payload: dict[str, Any]
    reply: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The command as the hub receives it."""
        return {"command_id": self.command_id, "type": self.type, "payload": self.payload}


@dataclass(slots=True)
class _HubQueue:
    pending: list[Command] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    active_config: str | None = None


class CommandQueue:
    """Commands per hub; all methods run on the receiver's event loop."""

    def __init__(self) -> None:
        self._hubs: dict[str, _HubQueue] = {}
        self._commands: dict[str, Command] = {}

    def enqueue(self, hub_id: str, type_: str, payload: dict[str, Any]) -> Command:
        """Queue a command for `hub_id` and wake its long poll."""
        if type_ not in COMMAND_TYPES:
            raise ValueError(f"type must be one of {', '.join(COMMAND_TYPES)}")
        queue = self._hubs.setdefault(hub_id, _HubQueue())
        if len(queue.pending) >= MAX_PENDING_PER_HUB:
            raise ValueError(f"hub {hub_id} already has {MAX_PENDING_PER_HUB} pending commands")

        command = Command(f"c-{secrets.token_hex(8)}", hub_id, type_, payload)
        queue.pending.append(command)
        self._commands[command.command_id] = command
        queue.arrived.set()
        logger.info("command %s (%s) queued for hub %s", command.command_id, type_, hub_id)
        return command

    async def wait_for(
        self, hub_id: str, wait: float, give_up: Callable[[], Awaitable[bool]]
    ) -> list[Command]:
        """The hub's pending commands, waiting up to `wait` seconds for one to arrive.

        The wait is cut short, checked every `WAIT_SLICE_SECONDS`, once `give_up`
        says so: the hub hung up, or the receiver is shutting down.
        """
        queue = self._hubs.setdefault(hub_id, _HubQueue())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait, MAX_WAIT_SECONDS)
        while not queue.pending and loop.time() < deadline and not await give_up():
            queue.arrived.clear()
            slice_ = min(WAIT_SLICE_SECONDS, deadline - loop.time())
            try:
                async with asyncio.timeout(max(slice_, 0.0)):
                    await queue.arrived.wait()
            except TimeoutError:
                continue
        return list(queue.pending)

    def answer(self, hub_id: str, command_id: str, reply: dict[str, Any]) -> Command:
        """Record the hub's reply; the command is no longer pending."""
        command = self._commands.get(command_id)
        if command is None or command.hub_id != hub_id:
            raise KeyError(command_id)
        queue = self._hubs[hub_id]
        if command in queue.pending:
            queue.pending.remove(command)
        command.reply = reply
        if command.type == "configure" and isinstance(reply.get("active_version"), str):
            queue.active_config = reply["active_version"]
        logger.info("hub %s answered command %s", hub_id, command_id)
        return command

    def get(self, command_id: str) -> Command | None:
        """A command by id, answered or not."""
        return self._commands.get(command_id)

    def active_config(self, hub_id: str) -> str | None:
        """The configuration version the hub last reported active."""
        queue = self._hubs.get(hub_id)
        return queue.active_config if queue is not None else None
