"""Commands to devices: sent with a request id, acknowledged, or failed on timeout.

A command goes out at QoS 1 on ``<topic root>/<device id>/command/<name>`` with a
JSON body of its arguments plus ``request_id``. The device answers with a
``command_ack`` message naming that id and ``done`` or ``refused``; the ack is a
journaled event like any other, and this service updates the command when the
committed event reaches it. A command still unanswered after its model's
``command_timeout`` goes to ``failed``. Every command and its outcome is a row of
the ``device_commands`` table in the journal file, so its state survives restarts.

Rules reach devices through the same service (`send_command`), so a lamp switched
by a rule is tracked exactly like one switched from the console.
"""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from devices.errors import CommandError, ModbusWriteError, UnknownDeviceError
from devices.payloads import RejectedMessage, check_fields
from devices.profiles import COMMAND_ACK
from devices.registry import DeviceLifecycle, DeviceState, Registry
from hub.clock import Clock
from hub.events import Event
from hub.journal import Journal

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
RULES_ACTOR = "rules"
TABLE = """CREATE TABLE IF NOT EXISTS device_commands (
    request_id   TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    command      TEXT NOT NULL,
    args         TEXT NOT NULL,
    state        TEXT NOT NULL,
    sent_at      REAL NOT NULL,
    deadline     REAL NOT NULL,
    answered_at  REAL,
    detail       TEXT NOT NULL DEFAULT '',
    sent_by      TEXT NOT NULL
)"""
INDEX = "CREATE INDEX IF NOT EXISTS device_commands_by_device ON device_commands (device_id)"
COLUMNS = "request_id, device_id, command, args, state, sent_at, answered_at, detail, sent_by"

Publish = Callable[[str, bytes], None]


class CommandState(enum.StrEnum):
    """Where a command stands."""

    SENT = "sent"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class _Waiting:
    device_id: str
    deadline_monotonic: float
    timeout: float


class DeviceCommands:
    """Sends commands, matches acknowledgements, fails what is not answered in time."""

    def __init__(
        self, registry: Registry, journal: Journal, clock: Clock, publish: Publish, topic_root: str
    ) -> None:
        self._registry = registry
        self._journal = journal
        self._clock = clock
        self._publish = publish
        self._topic_root = topic_root
        self._waiting: dict[str, _Waiting] = {}

    async def open(self) -> None:
        """Create the table; commands left unanswered by a restart get a fresh timeout."""

        def create(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            conn.execute(TABLE)
            conn.execute(INDEX)
            rows = conn.execute(
                "SELECT request_id, device_id FROM device_commands WHERE state = ?",
                (CommandState.SENT.value,),
            )
            return [(row[0], row[1]) for row in rows]

        for request_id, device_id in await self._journal.write(create):
            self._wait_for(request_id, device_id, self._timeout_of(device_id))

    async def send(
        self, device_id: str, command: str, args: dict[str, Any], sent_by: str
    ) -> dict[str, Any]:
        """Check and publish one command; return its record, state ``sent``."""
        checked, timeout = self._check(device_id, command, args)
        request_id = await self._insert(device_id, command, checked, sent_by, timeout)
        self._wait_for(request_id, device_id, timeout)
        body = {**checked, "request_id": request_id}
        topic = f"{self._topic_root}/{device_id}/command/{command}"
        self._publish(topic, json.dumps(body, ensure_ascii=False, sort_keys=True).encode())
        logger.info("command %s sent to %s (request %s)", command, device_id, request_id)
        return self._record(request_id) or {}

    async def carry_out(
        self,
        device_id: str,
        command: str,
        args: dict[str, Any],
        sent_by: str,
        deliver: Callable[[], Awaitable[object]],
    ) -> dict[str, Any]:
        """Track a command the hub delivers itself (a verified Modbus write).

        `deliver` answers for the device: its result makes the command ``done``, a
        ModbusWriteError ``failed`` with the reason. Returns the settled record.
        """
        self._commissioned(device_id, command)
        request_id = await self._insert(device_id, command, args, sent_by, timeout=0.0)

        try:
            held = await deliver()
        except ModbusWriteError as exc:
            await self._settle(request_id, CommandState.FAILED, str(exc), device_id)
        else:
            await self._settle(request_id, CommandState.DONE, f"reads back {held}", device_id)
        return self._record(request_id) or {}

    async def send_command(self, device_id: str, command: str, args: dict[str, Any]) -> None:
        """A rule's command: sent and tracked like any other; a refusal is only logged."""
        try:
            await self.send(device_id, command, args, RULES_ACTOR)
        except (CommandError, UnknownDeviceError) as exc:
            logger.error("a rule's command could not be sent: %s", exc)

    async def observe(self, event: Event) -> None:
        """Settle the command a committed ``command_ack`` event answers."""
        if event.type != COMMAND_ACK:
            return
        request_id = str(event.data.get("request_id", ""))
        waiting = self._waiting.get(request_id)
        if waiting is None or waiting.device_id != event.device_id:
            logger.warning("%s acknowledged unknown request %s", event.device_id, request_id)
            return
        state = CommandState.DONE if event.data.get("result") == "done" else CommandState.REFUSED
        await self._settle(request_id, state, str(event.data.get("detail", "")))

    async def expire(self) -> list[str]:
        """Fail every command whose device did not answer in time; return their ids."""
        now = self._clock.monotonic()
        due = [rid for rid, waiting in self._waiting.items() if waiting.deadline_monotonic <= now]
        for request_id in due:
            timeout = self._waiting[request_id].timeout
            await self._settle(request_id, CommandState.FAILED, f"no ack within {timeout:g} s")
        return due

    async def run(self) -> None:
        """Look for timed-out commands every second."""
        while True:
            await self._clock.sleep(CHECK_INTERVAL)
            await self.expire()

    def record(self, request_id: str) -> dict[str, Any] | None:
        """One command and its state, or None."""
        return self._record(request_id)

    def for_device(self, device_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The device's newest commands first."""
        with self._journal.reading() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM device_commands WHERE device_id = ?"
                " ORDER BY sent_at DESC LIMIT ?",
                (device_id, limit),
            ).fetchall()
        return [_to_json(row) for row in rows]

    # -- steps -------------------------------------------------------------------

    def _commissioned(self, device_id: str, command: str) -> DeviceState:
        device = self._registry.get(device_id)
        if device is None:
            raise UnknownDeviceError(device_id, "no such commissioned device")
        if device.lifecycle is not DeviceLifecycle.COMMISSIONED:
            raise CommandError(device_id, command, f"device is {device.lifecycle.value}")
        return device

    def _check(
        self, device_id: str, command: str, args: dict[str, Any]
    ) -> tuple[dict[str, Any], float]:
        mqtt = self._commissioned(device_id, command).model.mqtt
        if mqtt is None or command not in mqtt.commands:
            known = sorted(mqtt.commands) if mqtt is not None else []
            raise CommandError(device_id, command, f"not a command of this model; known: {known}")
        try:
            checked = check_fields(mqtt.commands[command], args)
        except RejectedMessage as exc:
            raise CommandError(device_id, command, exc.detail) from exc
        return checked, mqtt.command_timeout

    async def _insert(
        self, device_id: str, command: str, args: dict[str, Any], sent_by: str, timeout: float
    ) -> str:
        """Record a new command, state ``sent``; return its request id."""
        request_id = uuid.uuid4().hex
        now = self._clock.wall()
        row = (request_id, device_id, command, json.dumps(args, ensure_ascii=False))
        await self._journal.write(
            lambda conn: conn.execute(
                "INSERT INTO device_commands (request_id, device_id, command, args, state,"
                " sent_at, deadline, sent_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, CommandState.SENT.value, now, now + timeout, sent_by),
            )
        )
        return request_id

    def _timeout_of(self, device_id: str) -> float:
        device = self._registry.get(device_id)
        mqtt = device.model.mqtt if device is not None else None
        return mqtt.command_timeout if mqtt is not None else CHECK_INTERVAL

    def _wait_for(self, request_id: str, device_id: str, timeout: float) -> None:
        deadline = self._clock.monotonic() + timeout
        self._waiting[request_id] = _Waiting(device_id, deadline, timeout)

    async def _settle(
        self, request_id: str, state: CommandState, detail: str, device_id: str = "?"
    ) -> None:
        answered_at = self._clock.wall()
        await self._journal.write(
            lambda conn: conn.execute(
                "UPDATE device_commands SET state = ?, answered_at = ?, detail = ?"
                " WHERE request_id = ? AND state = ?",
                (state.value, answered_at, detail[:200], request_id, CommandState.SENT.value),
            )
        )
        waiting = self._waiting.pop(request_id, None)
        device_id = waiting.device_id if waiting else device_id
        log = logger.warning if state is CommandState.FAILED else logger.info
        log("command %s to %s: %s %s", request_id, device_id, state.value, detail)

    def _record(self, request_id: str) -> dict[str, Any] | None:
        with self._journal.reading() as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM device_commands WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else _to_json(row)


def _to_json(row: Any) -> dict[str, Any]:
    return {
        "request_id": row[0],
        "device_id": row[1],
        "command": row[2],
        "args": json.loads(row[3]),
        "state": row[4],
        "sent_at": row[5],
        "answered_at": row[6],
        "detail": row[7],
        "sent_by": row[8],
    }
