"""Polling one Modbus TCP device on its model's register map.

Each poll reads every block `plan_reads` makes of the map, decodes the words with
`devices.registers`, and hands one `Reading` to the hub. A poll either succeeds in
full or yields nothing: an exception reply, a timeout or a broken link is counted
and never turned into values (a gateway that stores a refused read as zeros
reports an empty hall as a fact).

Health is a small state machine, reported on transitions only:

    unknown --poll ok--> online --(retries + 1) failed polls in a row--> offline
                          ^                                                 |
                          +------------------- poll ok ---------------------+

While a device is offline the poller keeps trying, with a delay that doubles from
the poll interval up to `max_backoff` (jittered, so many dead units on one hub do
not retry in lockstep). All waiting goes through the injected `Clock`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from devices.errors import (
    DeviceError,
    ModbusExceptionReply,
    ModbusLinkError,
    ModbusReadError,
    ModbusTimeout,
)
from devices.profiles import DeviceModel, ModbusSpec
from devices.registers import BIT_TABLES, ReadBlock, RegisterValue, decode_block, plan_reads
from hub import metrics
from hub.clock import Clock

logger = logging.getLogger(__name__)

ReadingCallback = Callable[["Reading"], Awaitable[None]]
HealthCallback = Callable[[str, bool, str], Awaitable[None]]

T = TypeVar("T")

BACKOFF_JITTER = 0.2  # each backoff delay is stretched or shrunk by up to 20 %


@dataclass(frozen=True, slots=True)
class Reading:
    """The decoded values of one successful poll."""

    device_id: str
    message: str
    values: dict[str, RegisterValue]
    polled_at: float


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
    last_failure: str = ""
    dropped_values: dict[str, int] = field(default_factory=dict)


class ModbusPoller:
    """Polls one Modbus TCP unit until cancelled; see the module docstring."""

    def __init__(
        self,
        device_id: str,
        host: str,
        port: int,
        unit_id: int,
        model: DeviceModel,
        clock: Clock,
        on_reading: ReadingCallback,
        on_health: HealthCallback,
        *,
        max_backoff: float = 60.0,
        max_gap: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        if model.modbus is None:
            raise DeviceError(device_id, f"model {model.model} is not a Modbus model")
        self.device_id = device_id
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.model = model
        self.spec: ModbusSpec = model.modbus
        self.blocks = plan_reads(self.spec.registers, max_gap=max_gap, device_id=device_id)
        self.online: bool | None = None
        self.counters = PollCounters()
        self._clock = clock
        self._on_reading = on_reading
        self._on_health = on_health
        self._max_backoff = max(max_backoff, self.spec.poll_interval)
        self._rng = rng or random.Random()
        self._client: AsyncModbusTcpClient | None = None

    async def run(self) -> None:
        """Poll at the model's interval, backing off while offline, until cancelled."""
        logger.info(
            "polling %s at %s:%d unit %d every %ss (%d reads)",
            self.device_id,
            self.host,
            self.port,
            self.unit_id,
            self.spec.poll_interval,
            len(self.blocks),
        )
        try:
            while True:
                started = self._clock.monotonic()
                await self.poll_once()
                elapsed = self._clock.monotonic() - started
                await self._clock.sleep(max(0.0, self.next_delay() - elapsed))
        finally:
            self._disconnect()

    async def poll_once(self) -> Reading | None:
        """One poll: read, decode, report; returns the reading, or None if it failed."""
        self.counters.polls += 1
        try:
            values = await self._read_all()
        except DeviceError as exc:  # no usable reply, or one that would not decode
            await self._record_failure(exc)
            return None

        reading = Reading(self.device_id, self.spec.message, values, self._clock.monotonic())
        await self._record_success()
        await self._deliver(reading)
        return reading

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
        client = await self._connected_client()
        values: dict[str, RegisterValue] = {}
        for block in self.blocks:
            words = await self._read_block(client, block)
            values.update(decode_block(block, words, device_id=self.device_id))
        return self._finite_only(values)

    async def _connected_client(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client

        self._disconnect()
        # pymodbus's own reconnect and retries are off: this poller owns both, so
        # every failure is counted here and a stale reply can never meet a new request.
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=self.spec.timeout,
            retries=0,
            reconnect_delay=0,
            name=self.device_id,
        )
        try:
            connected = await _guarded(client.connect(), self.spec.timeout + 1.0)
        except TimeoutError:
            connected = False
        if not connected:
            client.close()
            first = self.blocks[0]
            raise self._read_error(
                ModbusLinkError, first, f"cannot connect to {self.host}:{self.port}"
            )
        self._client = client
        return client

    async def _read_block(
        self, client: AsyncModbusTcpClient, block: ReadBlock
    ) -> list[int] | list[bool]:
        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete_input": client.read_discrete_inputs,
        }[block.table]
        request = read(block.address, count=block.count, device_id=self.unit_id)
        try:
            with metrics.MODBUS_LATENCY.labels(block.table).time():
                response = await _guarded(request, self.spec.timeout + 1.0)
        except (ModbusIOException, TimeoutError) as exc:
            self._disconnect()  # a late reply must not be taken for the next request's
            raise self._read_error(ModbusTimeout, block, "no reply") from exc
        except (ModbusException, OSError) as exc:
            self._disconnect()
            raise self._read_error(ModbusLinkError, block, f"link failed: {exc}") from exc

        if response.isError():
            raise ModbusExceptionReply(
                self.device_id,
                block.table,
                block.address,
                block.count,
                int(getattr(response, "exception_code", 0)),
            )
        if block.table in BIT_TABLES:
            return list(response.bits[: block.count])
        return list(response.registers)

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

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- health ----------------------------------------------------------------------

    async def _record_failure(self, error: DeviceError) -> None:
        counters = self.counters
        counters.failures += 1
        counters.consecutive_failures += 1
        counters.last_failure = error.reason
        if isinstance(error, ModbusExceptionReply):
            counters.exception_replies += 1
        elif isinstance(error, ModbusTimeout):
            counters.timeouts += 1
        elif isinstance(error, ModbusLinkError):
            counters.link_errors += 1

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


async def _guarded(operation: Awaitable[T], timeout: float) -> T:
    """Await a pymodbus call without ever losing our own cancellation.

    pymodbus waits with ``asyncio.wait_for``, which on Python 3.11 returns the
    result, and drops the cancellation, when both arrive together; a poller
    cancelled at that instant would poll on forever. Shielding the call in a task
    of its own keeps the cancellation with the poller; the call is then cancelled.
    """
    call = asyncio.ensure_future(operation)
    call.add_done_callback(_collect_outcome)
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(call)
    finally:
        call.cancel()


def _collect_outcome(call: asyncio.Future[Any]) -> None:
    # An abandoned call's error was already reported as a timeout or cancellation.
    if not call.cancelled():
        call.exception()
