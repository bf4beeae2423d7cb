"""One Modbus line: a serial port or a TCP gateway shared by every unit behind it.

A line carries one request at a time, whatever the number of units on it: RS-485
is half duplex, and many gateways accept one TCP connection and serve their units
in turn. Pollers queue for the line; alarm inputs queue ahead of everything else,
and units that went offline behind everything else.

Each request:

1. waits out the inter-frame gap since the line was last busy (3.5 character times,
   1.75 ms above 19,200 baud; Modbus over Serial Line v1.02, §2.5.1.1);
2. throws away whatever bytes arrived since the last reply (a late answer to a
   timed-out request, noise), so they cannot be read as this request's answer;
3. sends the frame and, on adapters that echo what they send, reads the echo back;
4. reads the reply and checks it: CRC (RTU), transaction id (MBAP), unit id and
   function code. A reply for an earlier MBAP transaction is skipped; anything else
   that fails is garbage: the line waits for silence, drops it and reports it.

A broken port or connection is closed and opened again on the next request, so a
USB adapter that re-enumerates behind its ``/dev/serial/by-id/`` name comes back
without a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Literal

import serial

from devices.errors import LineGarbled, LineTimeout, LineUnavailable
from devices.modbus_frames import (
    EXCEPTION_FLAG,
    MBAP_HEADER,
    FrameError,
    Reply,
    expected_byte_count,
    mbap_frame,
    parse_mbap_header,
    parse_rtu,
    pdu_length,
    rtu_frame,
    rtu_frame_length,
)
from devices.modbus_links import Link, open_serial, open_tcp
from hub.errors import ConfigError

logger = logging.getLogger(__name__)

ALARM_PRIORITY = 0
NORMAL_PRIORITY = 1
OFFLINE_PRIORITY = 2  # units that stopped answering wait behind those that answer

Framing = Literal["rtu", "mbap"]


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Where a line is and how it frames requests.

    Give `serial_port` for RS-485 (RTU framing), or `host` and `port` for a TCP
    gateway (MBAP framing, or RTU framing for gateways that pass frames through).
    """

    host: str | None = None
    port: int = 502
    serial_port: str | None = None
    framing: Framing = "mbap"
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    echo: bool = False

    @property
    def name(self) -> str:
        """How logs and errors name the line."""
        return self.serial_port or f"{self.host}:{self.port}"

    @property
    def frame_gap(self) -> float:
        """Silence before a frame, in seconds: 3.5 characters of 11 bits on serial."""
        if self.serial_port is None:
            return 0.0
        if self.baudrate > 19_200:
            return 0.00175
        return 3.5 * 11 / self.baudrate


class ModbusLine:
    """Sends one request at a time on one port or gateway; see the module docstring."""

    def __init__(self, settings: LineSettings) -> None:
        settings = _as_driven(settings)
        self.settings = settings
        self.name = settings.name
        self.requests = 0
        self.resyncs = 0
        self.reopens = 0
        self._turn = _PriorityTurn()
        self._link: Link | None = None
        self._transaction_ids = itertools.count(1)
        self._last_busy = 0.0
        self._garbled = False  # warned of garbage; a clean reply resets it

    async def request(
        self, unit_id: int, pdu: bytes, timeout: float, *, priority: int = NORMAL_PRIORITY
    ) -> Reply:
        """Send `pdu` to `unit_id` and return its checked reply (maybe an exception reply)."""
        async with self._turn.held(priority):
            self.requests += 1
            link = await self._open(timeout)
            try:
                return await self._exchange(link, unit_id, pdu, timeout)
            except LineUnavailable:
                self.close()
                raise
            finally:
                self._last_busy = time.monotonic()

    def close(self) -> None:
        """Close the port or connection; the next request opens it again."""
        if self._link is not None:
            self._link.close()
            self._link = None

    # -- one exchange --------------------------------------------------------------

    async def _exchange(self, link: Link, unit_id: int, pdu: bytes, timeout: float) -> Reply:
        await self._wait_frame_gap()
        link.discard()

        transaction_id = next(self._transaction_ids) & 0xFFFF
        if self.settings.framing == "rtu":
            frame = rtu_frame(unit_id, pdu)
        else:
            frame = mbap_frame(transaction_id, unit_id, pdu)
        link.send(frame)

        try:
            async with asyncio.timeout(timeout):
                if self.settings.echo:
                    await self._skip_echo(link, frame)
                reply = await self._receive(link, transaction_id)
        except TimeoutError as exc:
            raise LineTimeout(self.name, f"unit {unit_id}: no reply in {timeout}s") from exc
        except FrameError as exc:
            await self._resynchronise(link)
            raise LineGarbled(self.name, f"unit {unit_id}: {exc.reason}") from exc

        checked = self._checked(reply, unit_id, pdu)
        self._garbled = False
        return checked

    async def _receive(self, link: Link, transaction_id: int) -> Reply:
        if self.settings.framing == "rtu":
            return await _receive_rtu(link)
        while True:
            answered, reply = await _receive_mbap(link)
            if answered == transaction_id:
                return reply
            logger.debug("%s: skipped a reply to earlier transaction %d", self.name, answered)

    async def _skip_echo(self, link: Link, frame: bytes) -> None:
        echo = await link.read_exactly(len(frame))
        if echo != frame:
            raise FrameError("the adapter's echo differs from the frame sent")

    def _checked(self, reply: Reply, unit_id: int, request: bytes) -> Reply:
        if reply.unit_id != unit_id:
            raise LineGarbled(
                self.name, f"reply from unit {reply.unit_id} to a request for unit {unit_id}"
            )
        if reply.function & ~EXCEPTION_FLAG != request[0]:
            raise LineGarbled(
                self.name, f"reply for function {reply.function} to function {request[0]}"
            )
        expected = expected_byte_count(request)
        if reply.exception_code is None and expected is not None and reply.data[0] != expected:
            raise LineGarbled(
                self.name, f"reply of {reply.data[0]} bytes to a read of {expected} bytes"
            )
        return reply

    async def _wait_frame_gap(self) -> None:
        remaining = self._last_busy + self.settings.frame_gap - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _resynchronise(self, link: Link) -> None:
        """Wait until the line has been quiet for a frame gap, then drop what came."""
        self.resyncs += 1
        quiet = max(self.settings.frame_gap, 0.005)
        while await link.wait_for_data(quiet):
            link.discard()
        link.discard()
        if self._garbled:
            logger.debug("%s: garbled reply again; line resynchronised", self.name)
        else:
            logger.warning("%s: garbled reply; line resynchronised", self.name)
        self._garbled = True

    # -- opening -------------------------------------------------------------------

    async def _open(self, timeout: float) -> Link:
        if self._link is not None and not self._link.broken:
            return self._link
        self.close()
        try:
            if self.settings.serial_port is not None:
                link = open_serial(
                    self.settings.serial_port,
                    self.settings.baudrate,
                    self.settings.parity,
                    self.settings.stopbits,
                )
            else:
                assert self.settings.host is not None, "a TCP line has a host"
                link = await open_tcp(self.settings.host, self.settings.port, timeout)
        except TimeoutError as exc:
            raise LineUnavailable(self.name, f"no connection within {timeout}s") from exc
        except (OSError, serial.SerialException) as exc:
            raise LineUnavailable(self.name, f"cannot open: {exc}") from exc
        self.reopens += 1
        self._link = link
        logger.info("%s: opened", self.name)
        return link


def _as_driven(settings: LineSettings) -> LineSettings:
    """The settings as the line uses them: a serial line always frames in RTU."""
    if settings.serial_port is not None:
        return dataclasses.replace(settings, framing="rtu")
    return settings


async def _receive_rtu(link: Link) -> Reply:
    head = await link.read_exactly(2)
    length = rtu_frame_length(head)
    if length is None:
        head += await link.read_exactly(1)
        length = rtu_frame_length(head)
    assert length is not None, "a byte count follows the function code"
    frame = head + await link.read_exactly(length - len(head))
    return parse_rtu(frame)


async def _receive_mbap(link: Link) -> tuple[int, Reply]:
    transaction_id, unit_id, size = parse_mbap_header(await link.read_exactly(MBAP_HEADER))
    pdu = await link.read_exactly(size)
    expected = pdu_length(pdu)
    if expected != size:
        raise FrameError(f"MBAP length {size} does not match a PDU of {expected} bytes")
    return transaction_id, Reply(unit_id=unit_id, function=pdu[0], data=pdu[1:])


# -- whose turn -------------------------------------------------------------------------


class _PriorityTurn:
    """A lock whose waiters are served lowest priority number first, then in order."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def held(self, priority: int) -> _Held:
        return _Held(self, priority)

    async def acquire(self, priority: int) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the line just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, turn = heapq.heappop(self._waiters)
            if not turn.done():
                turn.set_result(None)
                return
        self._held = False


class _Held:
    def __init__(self, turn: _PriorityTurn, priority: int) -> None:
        self._turn = turn
        self._priority = priority

    async def __aenter__(self) -> None:
        await self._turn.acquire(self._priority)

    async def __aexit__(self, *exc_info: object) -> None:
        self._turn.release()


class ModbusLines:
    """The hub's lines, one per serial port or gateway, shared by the units on it."""

    def __init__(self) -> None:
        self._lines: dict[str, ModbusLine] = {}

    def line_for(self, settings: LineSettings) -> ModbusLine:
        """The line `settings` names, made on first use.

        Units on one port or gateway must agree on how it is driven (baud rate,
        framing, echo...): a line has one setting of each.
        """
        line = self._lines.get(settings.name)
        if line is None:
            line = self._lines[settings.name] = ModbusLine(settings)
        elif line.settings != _as_driven(settings):
            raise ConfigError(
                "devices",
                [f"units on Modbus line {settings.name} give different line settings"],
            )
        return line

    def close(self) -> None:
        """Close every line."""
        for line in self._lines.values():
            line.close()
