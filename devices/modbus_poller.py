"""Polling one Modbus unit on its model's register map, over a shared `ModbusLine`.

Each poll reads every block `plan_reads` makes of the map, decodes the words with
`devices.registers`, and hands one `Reading` to the hub. A poll either succeeds in
full or yields nothing: an exception reply, a timeout, a garbled reply or a broken
link is counted and never turned into values (a gateway that stores a refused read
as zeros reports an empty hall as a fact).

On top of the raw values a model may ask for:

* counter deltas: a register marked ``counter`` (a running total that wraps or
  restarts on reboot) gains ``<name>_delta``, the people since the last poll;
* a zone count: entries minus exits, never below zero, re-zeroed when the hall
  closes (``zone_count``);
* edge events: a bool register that turns on or off makes one event of its own
  (``edges``), e.g. ``call`` and ``reset`` of a toilet alarm wired to a discrete
  input. Such models are polled at 200 ms or faster and go first on their line.

These live in `devices.modbus_derived`. Writes (commands) are read back.

Health is a small state machine, reported on transitions only:

    unknown --poll ok--> online --(retries + 1) failed polls in a row--> offline
                          ^                                                 |
                          +------------------- poll ok ---------------------+

While a device is offline the poller keeps trying, with a delay that doubles from
the poll interval up to `max_backoff` (jittered, so many dead units on one hub do
not retry in lockstep). All waiting goes through the injected `Clock`.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from devices.errors import (
    CommandError,
    DeviceError,
    LineGarbled,
    LineTimeout,
    LineUnavailable,
    ModbusBadReply,
    ModbusExceptionReply,
    ModbusLinkError,
    ModbusReadError,
    ModbusTimeout,
    ModbusWriteError,
    RegisterDecodeError,
)
from devices.modbus_derived import Derivations, OpenHours
from devices.modbus_frames import Reply, bits_of, read_request, registers_of, write_request
from devices.modbus_line import ALARM_PRIORITY, NORMAL_PRIORITY, OFFLINE_PRIORITY, ModbusLine
from devices.profiles import DeviceModel, ModbusSpec, Register
from devices.registers import (
    BIT_TABLES,
    ReadBlock,
    RegisterValue,
    decode_block,
    encode_register,
    plan_reads,
)
from hub import metrics
from hub.clock import Clock
from hub.events import Lane

logger = logging.getLogger(__name__)

ReadingCallback = Callable[["Reading"], Awaitable[None]]
HealthCallback = Callable[[str, bool, str], Awaitable[None]]

BACKOFF_JITTER = 0.2  # each backoff delay is stretched or shrunk by up to 20 %


@dataclass(frozen=True, slots=True)
class Reading:
    """The decoded values of one successful poll."""

    device_id: str
    message: str
    values: dict[str, RegisterValue]
    polled_at: float
    lane: Lane = Lane.TELEMETRY


@dataclass(slots=True)
class PollCounters:
    """What the poller has done so far, for metrics and the console."""

    polls: int = 0
    readings: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    exception_replies: int = 0
    timeouts: int = 0
    link_errors: int = 0
    bad_replies: int = 0
    last_failure: str = ""
    dropped_values: dict[str, int] = field(default_factory=dict)


class ModbusPoller:
    """Polls one Modbus unit until cancelled; see the module docstring."""

    def __init__(
        self,
        device_id: str,
        line: ModbusLine,
        unit_id: int,
        model: DeviceModel,
        clock: Clock,
        on_reading: ReadingCallback,
        on_health: HealthCallback,
        *,
        max_backoff: float = 60.0,
        max_gap: int = 0,
        rng: random.Random | None = None,
        is_open: OpenHours | None = None,
    ) -> None:
        if model.modbus is None:
            raise DeviceError(device_id, f"model {model.model} is not a Modbus model")
        self.device_id = device_id
        self.line = line
        self.unit_id = unit_id
        self.model = model
        self.spec: ModbusSpec = model.modbus
        self.blocks = plan_reads(self.spec.registers, max_gap=max_gap, device_id=device_id)
        self.online: bool | None = None
        self.last_reading_at: float | None = None  # monotonic time of the last good poll
        self.counters = PollCounters()
        self._clock = clock
        self._on_reading = on_reading
        self._on_health = on_health
        self._max_backoff = max(max_backoff, self.spec.poll_interval)
        self._rng = rng or random.Random()
        self._priority = ALARM_PRIORITY if self.spec.priority == "alarm" else NORMAL_PRIORITY
        self.derivations = Derivations(device_id, self.spec, is_open)

    async def run(self) -> None:
        """Poll at the model's interval, backing off while offline, until cancelled."""
        logger.info(
            "polling %s on %s unit %d every %ss (%d reads)",
            self.device_id,
            self.line.name,
            self.unit_id,
            self.spec.poll_interval,
            len(self.blocks),
        )
        while True:
            started = self._clock.monotonic()
            await self.poll_once()
            elapsed = self._clock.monotonic() - started
            await self._clock.sleep(max(0.0, self.next_delay() - elapsed))

    async def poll_once(self) -> Reading | None:
        """One poll: read, decode, report; returns the reading, or None if it failed."""
        self.counters.polls += 1
        try:
            values = await self._read_all()
        except DeviceError as exc:  # no usable reply, or one that would not decode
            await self._record_failure(exc)
            return None

        polled_at = self.last_reading_at = self._clock.monotonic()
        values.update(self.derivations.values(values, self._clock.wall()))
        reading = Reading(self.device_id, self.spec.message, values, polled_at, self.spec.lane)
        await self._record_success()
        for edge in self.derivations.edges(values):
            await self._deliver(Reading(self.device_id, edge.message, {}, polled_at, edge.lane))
        if self.spec.readings:
            await self._deliver(reading)
        return reading

    async def write(self, name: str, value: RegisterValue) -> RegisterValue:
        """Write `value` to register `name`, read it back, and return what the unit holds.

        Raises ModbusWriteError when the unit refuses the write or holds another value
        afterwards (a read-only register, a value it clamped, a write lost on the line).
        """
        register = self._writable(name)
        try:
            words = encode_register(register, value, device_id=self.device_id)
        except RegisterDecodeError as exc:
            raise ModbusWriteError(self.device_id, name, exc.reason) from exc
        try:
            reply = await self._request(write_request(register.table, register.address, words))
            if reply.exception_code is not None:
                raise ModbusWriteError(
                    self.device_id, name, f"refused with exception {reply.exception_code}"
                )
            block = ReadBlock(register.table, register.address, len(words), (register,))
            held = decode_block(block, await self._read_block(block), device_id=self.device_id)
        except (ModbusReadError, LineUnavailable, LineTimeout, LineGarbled) as exc:
            raise ModbusWriteError(self.device_id, name, f"not verified: {exc.reason}") from exc

        if not _same_value(register, value, held[name]):
            raise ModbusWriteError(self.device_id, name, f"wrote {value}, reads back {held[name]}")
        logger.info("%s: wrote %s = %s, read back", self.device_id, name, value)
        return held[name]

    async def command(self, name: str, args: dict[str, Any]) -> RegisterValue:
        """Carry out the model's command `name` with `args`: one verified write."""
        register, value = self.resolve_command(name, args)
        return await self.write(register, value)

    def resolve_command(self, name: str, args: dict[str, Any]) -> tuple[str, RegisterValue]:
        """The register and value the model's command `name` writes for `args`.

        Raises CommandError, before anything is sent, for a command the model does not
        have or an argument it does not allow.
        """
        command = self.spec.commands.get(name)
        if command is None:
            known = sorted(self.spec.commands)
            raise CommandError(self.device_id, name, f"not a command of this model; known: {known}")
        argument = args.get(command.argument)
        if not isinstance(argument, int | float | bool | str):
            raise CommandError(self.device_id, name, f"needs argument {command.argument}")
        if command.values:
            if str(argument) not in command.values:
                allowed = sorted(command.values)
                raise CommandError(
                    self.device_id, name, f"{command.argument}={argument!r} is not one of {allowed}"
                )
            argument = command.values[str(argument)]
        return command.write, argument

    @property
    def stale(self) -> bool:
        """Whether the last reading is out of date: a poll has failed since it was made."""
        return self.last_reading_at is None or self.counters.consecutive_failures > 0

    def next_delay(self) -> float:
        """Seconds from this poll's start to the next: the interval, or a backoff."""
        interval = self.spec.poll_interval
        if self.online is not False:
            return interval
        doublings = self.counters.consecutive_failures - (self.spec.retries + 1)
        backoff = min(interval * 2.0 ** min(doublings, 30), self._max_backoff)
        jitter = 1.0 + self._rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER)
        return max(interval, backoff * jitter)

    # -- reading ---------------------------------------------------------------------

    async def _read_all(self) -> dict[str, RegisterValue]:
        values: dict[str, RegisterValue] = {}
        for block in self.blocks:
            words = await self._read_block(block)
            values.update(decode_block(block, words, device_id=self.device_id))
        return self._finite_only(values)

    async def _read_block(self, block: ReadBlock) -> list[int] | list[bool]:
        try:
            with metrics.MODBUS_LATENCY.labels(block.table).time():
                reply = await self._request(read_request(block.table, block.address, block.count))
        except LineTimeout as exc:
            raise self._read_error(ModbusTimeout, block, "no reply") from exc
        except LineGarbled as exc:
            raise self._read_error(ModbusBadReply, block, exc.reason) from exc
        except LineUnavailable as exc:
            raise self._read_error(
                ModbusLinkError, block, f"{self.line.name}: {exc.reason}"
            ) from exc

        if reply.exception_code is not None:
            raise ModbusExceptionReply(
                self.device_id, block.table, block.address, block.count, reply.exception_code
            )
        if block.table in BIT_TABLES:
            return bits_of(reply.data, block.count)
        return registers_of(reply.data)

    async def _request(self, pdu: bytes) -> Reply:
        priority = self._priority
        if self.online is False and priority != ALARM_PRIORITY:
            priority = OFFLINE_PRIORITY
        return await self.line.request(self.unit_id, pdu, self.spec.timeout, priority=priority)

    def _writable(self, name: str) -> Register:
        for register in self.spec.registers:
            if register.name == name and register.table in ("holding", "coil"):
                return register
        raise ModbusWriteError(self.device_id, name, "no holding register or coil of that name")

    def _read_error(
        self, kind: type[ModbusReadError], block: ReadBlock, reason: str
    ) -> ModbusReadError:
        return kind(self.device_id, block.table, block.address, block.count, reason)

    def _finite_only(self, values: dict[str, RegisterValue]) -> dict[str, RegisterValue]:
        # A float register holding NaN means "no valid value" on most devices; JSON
        # and the city have no NaN, so the value is left out of the reading.
        kept: dict[str, RegisterValue] = {}
        for name, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                self.counters.dropped_values[name] = self.counters.dropped_values.get(name, 0) + 1
                logger.debug("%s: %s is %s, left out of the reading", self.device_id, name, value)
                continue
            kept[name] = value
        return kept

    # -- health ----------------------------------------------------------------------

    async def _record_failure(self, error: DeviceError) -> None:
        counters = self.counters
        counters.failures += 1
        counters.consecutive_failures += 1
        counters.last_failure = error.reason
        result = "bad_value"  # words that would not decode as the model says
        if isinstance(error, ModbusExceptionReply):
            counters.exception_replies += 1
            result = "exception_reply"
        elif isinstance(error, ModbusTimeout):
            counters.timeouts += 1
            result = "timeout"
        elif isinstance(error, ModbusLinkError):
            counters.link_errors += 1
            result = "link_error"
        elif isinstance(error, ModbusBadReply):
            counters.bad_replies += 1
            result = "bad_reply"
        metrics.MODBUS_POLLS.labels(result).inc()

        if self.online is False:
            logger.debug("%s still offline: %s", self.device_id, error.reason)
            return
        if counters.consecutive_failures <= self.spec.retries:
            logger.debug(
                "%s poll failed (%d in a row): %s",
                self.device_id,
                counters.consecutive_failures,
                error.reason,
            )
            return
        logger.error(
            "%s offline after %d failed polls: %s",
            self.device_id,
            counters.consecutive_failures,
            error.reason,
        )
        await self._set_health(online=False, reason=error.reason)

    async def _record_success(self) -> None:
        failures = self.counters.consecutive_failures
        self.counters.readings += 1
        self.counters.consecutive_failures = 0
        metrics.MODBUS_POLLS.labels("ok").inc()
        if self.online is True:
            return
        if self.online is False:
            logger.info("%s back online after %d failed polls", self.device_id, failures)
        else:
            logger.info("%s online", self.device_id)
        await self._set_health(online=True, reason="answering polls")

    async def _set_health(self, *, online: bool, reason: str) -> None:
        self.online = online
        try:
            await self._on_health(self.device_id, online, reason)
        except Exception:
            logger.exception("%s: health callback raised; polling goes on", self.device_id)

    async def _deliver(self, reading: Reading) -> None:
        try:
            await self._on_reading(reading)
        except Exception:
            logger.exception("%s: reading callback raised; polling goes on", self.device_id)


def _same_value(register: Register, wrote: RegisterValue, held: RegisterValue) -> bool:
    """Whether the value read back is the one written, to the register's resolution."""
    numbers = (int, float)
    if isinstance(wrote, bool) or isinstance(held, bool) or not isinstance(wrote, numbers):
        return wrote == held
    if not isinstance(held, numbers):
        return False
    if register.type.startswith("float"):  # a float32 keeps about 7 digits
        return math.isclose(wrote, held, rel_tol=1e-6)
    # An integer register holds whole steps of `scale`: 21.7 at scale 0.1 reads back
    # as 217 * 0.1, which is not exactly 21.7 in binary floating point.
    return abs(wrote - held) < abs(register.scale) / 2
