"""A Modbus slave that writes raw frames, so it can misbehave as field devices do.

pymodbus's servers answer correctly or not at all. Field devices and gateways also
answer for the wrong unit id, send noise, fail the CRC, answer after the master has
given up, drop the connection, or reboot and start their counters again. This slave
builds every frame itself (`devices.modbus_frames`), serves one or more units on a
TCP port (MBAP or RTU framing, optionally one connection at a time like many
gateways) or on a serial port (RTU), and switches faults per unit:

    silent      no reply at all
    garbage     random bytes instead of a reply
    bad_crc     a correct reply with its CRC broken (RTU framing)
    busy        exception 6, slave device busy
    wrong_unit  a correct reply, but from another unit id
    late        a correct reply, sent after `late_delay` seconds
    flap        every other request: the connection is dropped instead of answered
    read_only   writes are acknowledged but not stored

`reboot()` sets a unit's counter registers back to zero, as a power cycle does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import serial

from devices.modbus_frames import (
    MBAP_HEADER,
    READ_FUNCTIONS,
    WRITE_COIL,
    WRITE_REGISTER,
    WRITE_REGISTERS,
    crc16,
    mbap_frame,
    parse_mbap_header,
    rtu_frame,
)
from devices.profiles import DeviceModel
from devices.registers import RegisterValue, encode_register

logger = logging.getLogger(__name__)

Fault = Literal[
    "none", "silent", "garbage", "bad_crc", "busy", "wrong_unit", "late", "flap", "read_only"
]

_TABLE_OF_FUNCTION = {code: table for table, code in READ_FUNCTIONS.items()}
ILLEGAL_ADDRESS = 2
SLAVE_BUSY = 6


@dataclass
class FaultyUnit:
    """One unit behind the slave: its tables, its fault and what it was asked."""

    unit_id: int
    model: DeviceModel | None = None
    fault: Fault = "none"
    tables: dict[str, dict[int, int]] = field(default_factory=dict)
    requests: list[tuple[int, int]] = field(default_factory=list)  # (function, address)

    def set_value(self, name: str, value: RegisterValue) -> None:
        """Store `value` in register `name` of the unit's model, encoded as the model says."""
        assert self.model is not None and self.model.modbus is not None
        register = next(r for r in self.model.modbus.registers if r.name == name)
        self.set_words(register.table, register.address, encode_register(register, value))

    def set_words(self, table: str, address: int, words: list[int]) -> None:
        """Store raw words (or 0/1 bits) from `address` on."""
        for offset, word in enumerate(words):
            self.tables.setdefault(table, {})[address + offset] = word

    def reboot(self) -> None:
        """Counters start again from zero, as after a power cycle."""
        assert self.model is not None and self.model.modbus is not None
        for register in self.model.modbus.registers:
            if register.counter:
                self.set_value(register.name, 0)
        logger.info("unit %d rebooted: counters at zero", self.unit_id)


class FaultySlave:
    """Serves `units` with raw frames; see the module docstring."""

    def __init__(
        self,
        units: list[FaultyUnit],
        *,
        framing: Literal["rtu", "mbap"] = "mbap",
        echo: bool = False,
        late_delay: float = 0.5,
        one_connection: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.units = {unit.unit_id: unit for unit in units}
        self.framing = framing
        self.echo = echo
        self.late_delay = late_delay
        self.one_connection = one_connection
        self.connections = 0
        self.most_connections = 0
        self.refused_connections = 0
        self.frame_times: list[tuple[str, float]] = []  # ("in"/"out", loop time)
        self.request_log: list[int] = []  # unit ids, in the order requests arrived
        self._rng = rng or random.Random()
        self._flap_drop = False
        self._server: asyncio.Server | None = None
        self._serial: serial.Serial | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- serving -------------------------------------------------------------------

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on `host` (loopback by default); returns the port."""
        self._server = await asyncio.start_server(self._on_connection, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    def serve_serial(self, path: str, baudrate: int = 9600) -> None:
        """Answer RTU requests on the serial port at `path`."""
        self.framing = "rtu"
        self._serial = serial.Serial(path, baudrate=baudrate, timeout=0)
        buffer = bytearray()
        port = self._serial

        def on_readable() -> None:
            try:
                buffer.extend(port.read(max(1, port.in_waiting)))
            except (OSError, serial.SerialException):
                asyncio.get_running_loop().remove_reader(port.fileno())
                return
            self._answer_rtu_buffer(buffer, port.write)

        asyncio.get_running_loop().add_reader(port.fileno(), on_readable)

    async def stop(self) -> None:
        """Stop listening and answering."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._serial is not None:
            if self._serial.is_open:
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
                self._serial.close()
            self._serial = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.one_connection and self.connections >= 1:
            self.refused_connections += 1
            writer.close()
            return
        self.connections += 1
        self.most_connections = max(self.most_connections, self.connections)
        try:
            if self.framing == "mbap":
                await self._serve_mbap(reader, writer)
            else:
                await self._serve_rtu_stream(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    async def _serve_mbap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            header = await reader.readexactly(MBAP_HEADER)
            transaction_id, unit_id, size = parse_mbap_header(header)
            pdu = await reader.readexactly(size)
            if self._drops_connection(unit_id):
                return
            wrap = functools.partial(_mbap_wrap, transaction_id)
            self._answer(unit_id, pdu, wrap, writer.write)

    async def _serve_rtu_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        buffer = bytearray()
        while True:
            chunk = await reader.read(256)
            if not chunk:
                return
            buffer.extend(chunk)
            if buffer and self._drops_connection(buffer[0]):
                return
            self._answer_rtu_buffer(buffer, writer.write)

    def _answer_rtu_buffer(self, buffer: bytearray, send: Callable[[bytes], object]) -> None:
        while True:
            size = _rtu_request_length(buffer)
            if size is None or len(buffer) < size:
                return
            frame, rest = bytes(buffer[:size]), buffer[size:]
            buffer[:] = rest
            if crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
                buffer.clear()  # noise: start again with the next frame
                return
            self.frame_times.append(("in", asyncio.get_running_loop().time()))
            if self.echo:
                send(frame)
            self._answer(frame[0], frame[1:-2], rtu_frame, send)

    def _drops_connection(self, unit_id: int) -> bool:
        unit = self.units.get(unit_id)
        if unit is None or unit.fault != "flap":
            return False
        self._flap_drop = not self._flap_drop
        return self._flap_drop

    # -- answering -----------------------------------------------------------------

    def _answer(
        self,
        unit_id: int,
        pdu: bytes,
        wrap: Callable[[int, bytes], bytes],
        send: Callable[[bytes], object],
    ) -> None:
        self.request_log.append(unit_id)
        unit = self.units.get(unit_id)
        if unit is None or unit.fault == "silent":
            return
        unit.requests.append((pdu[0], struct.unpack(">H", pdu[1:3])[0]))
        reply_unit = unit_id + 1 if unit.fault == "wrong_unit" else unit_id
        frame = wrap(reply_unit, self._reply_pdu(unit, pdu))

        if unit.fault == "garbage":
            frame = bytes(self._rng.randrange(256) for _ in range(len(frame) + 3))
        elif unit.fault == "bad_crc":
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        if unit.fault == "late":
            self._send_later(frame, send)
            return
        self._send(frame, send)

    def _send(self, frame: bytes, send: Callable[[bytes], object]) -> None:
        send(frame)
        self.frame_times.append(("out", asyncio.get_running_loop().time()))

    def _send_later(self, frame: bytes, send: Callable[[bytes], object]) -> None:
        async def later() -> None:
            await asyncio.sleep(self.late_delay)
            self._send(frame, send)

        task = asyncio.create_task(later(), name="faulty-slave-late-reply")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reply_pdu(self, unit: FaultyUnit, pdu: bytes) -> bytes:
        function = pdu[0]
        if unit.fault == "busy":
            return bytes([function | 0x80, SLAVE_BUSY])
        if function in _TABLE_OF_FUNCTION:
            address, count = struct.unpack(">HH", pdu[1:5])
            return _read_reply(unit, function, address, count)
        if function in (WRITE_COIL, WRITE_REGISTER, WRITE_REGISTERS):
            return _write_reply(unit, pdu)
        return bytes([function | 0x80, 1])


def _read_reply(unit: FaultyUnit, function: int, address: int, count: int) -> bytes:
    table = unit.tables.get(_TABLE_OF_FUNCTION[function], {})
    if any(address + i not in table for i in range(count)):
        return bytes([function | 0x80, ILLEGAL_ADDRESS])
    values = [table[address + i] for i in range(count)]
    if function in (1, 2):
        packed = bytearray((count + 7) // 8)
        for i, bit in enumerate(values):
            packed[i // 8] |= (1 if bit else 0) << (i % 8)
        return bytes([function, len(packed)]) + bytes(packed)
    payload = b"".join(struct.pack(">H", word) for word in values)
    return bytes([function, len(payload)]) + payload


def _write_reply(unit: FaultyUnit, pdu: bytes) -> bytes:
    function, address = pdu[0], struct.unpack(">H", pdu[1:3])[0]
    if function == WRITE_COIL:
        table, words = "coil", [1 if pdu[3] == 0xFF else 0]
    elif function == WRITE_REGISTER:
        table, words = "holding", [struct.unpack(">H", pdu[3:5])[0]]
    else:
        count = struct.unpack(">H", pdu[3:5])[0]
        table = "holding"
        words = [w for (w,) in struct.iter_unpack(">H", pdu[6 : 6 + 2 * count])]
    if any(address + i not in unit.tables.get(table, {}) for i in range(len(words))):
        return bytes([function | 0x80, ILLEGAL_ADDRESS])
    if unit.fault != "read_only":
        unit.set_words(table, address, words)
    return pdu[:5]


def _mbap_wrap(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    return mbap_frame(transaction_id, unit_id, pdu)


def _rtu_request_length(buffer: bytearray) -> int | None:
    if len(buffer) < 2:
        return None
    if buffer[1] in (15, WRITE_REGISTERS):
        return 9 + buffer[6] if len(buffer) >= 7 else None
    return 8


def unit_for(model: DeviceModel, unit_id: int, fault: Fault = "none") -> FaultyUnit:
    """A unit serving every register of `model`, all at zero (strings empty)."""
    assert model.modbus is not None, "a Modbus model"
    unit = FaultyUnit(unit_id, model, fault)
    for register in model.modbus.registers:
        unit.set_value(register.name, "" if register.type == "string" else 0)
    return unit
