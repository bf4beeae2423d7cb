"""Byte links under a Modbus line: a TCP connection or a serial port.

A link buffers what arrives (the event loop reads it as it comes), hands out exact
byte counts, can throw away what is buffered, and sends frames without ever
blocking the loop. A link that broke stays broken; the line opens a new one.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os

import serial

from devices.errors import LineUnavailable

logger = logging.getLogger(__name__)


class Link(abc.ABC):
    """Received bytes buffered for reading, and a way to send."""

    def __init__(self) -> None:
        self.broken = False
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._failure: Exception | None = None

    def feed(self, data: bytes) -> None:
        """Bytes arrived from the other end."""
        self._buffer.extend(data)
        self._arrived.set()

    def fail(self, reason: Exception) -> None:
        """The port or connection broke; every read and send from now on raises."""
        self.broken = True
        self._failure = reason
        self._arrived.set()

    def discard(self) -> None:
        """Throw away whatever arrived and was not read."""
        if self._buffer:
            logger.debug("dropping %d stale bytes: %s", len(self._buffer), self._buffer.hex())
        self._buffer.clear()
        self._arrived.clear()

    async def read_exactly(self, size: int) -> bytes:
        """The next `size` bytes, waiting for them as long as the caller allows."""
        while len(self._buffer) < size:
            self._raise_if_broken()
            self._arrived.clear()
            await self._arrived.wait()
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        return chunk

    async def wait_for_data(self, seconds: float) -> bool:
        """True if bytes arrived (or are waiting) within `seconds`."""
        if self._buffer:
            return True
        self._arrived.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._arrived.wait()
        except TimeoutError:
            return False
        return bool(self._buffer)

    def send(self, frame: bytes) -> None:
        """Send `frame` now, or raise LineUnavailable."""
        self._raise_if_broken()
        try:
            self._write(frame)
        except (OSError, serial.SerialException) as exc:
            self.fail(exc)
            raise LineUnavailable("", f"write failed: {exc}") from exc

    @abc.abstractmethod
    def close(self) -> None:
        """Close the port or connection."""

    @abc.abstractmethod
    def _write(self, frame: bytes) -> None: ...

    def _raise_if_broken(self) -> None:
        if self._failure is not None:
            raise LineUnavailable("", f"link broke: {self._failure}")


class _TcpLink(Link, asyncio.Protocol):
    def __init__(self) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionResetError("connection closed by the peer"))

    def _write(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _SerialLink(Link):
    def __init__(self, port: serial.Serial) -> None:
        super().__init__()
        self._port = port
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(port.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = self._port.read(max(1, self._port.in_waiting))
        except (OSError, serial.SerialException) as exc:
            self._stop_reading()
            self.fail(exc)
            return
        self.feed(data)

    def _write(self, frame: bytes) -> None:
        # The port is non-blocking (pyserial opens it so); a frame that does not fit in
        # the output buffer means nothing is draining the line: fail, never block.
        written = os.write(self._port.fileno(), frame)
        if written != len(frame):
            raise OSError(f"serial output buffer full: wrote {written} of {len(frame)} bytes")

    def _stop_reading(self) -> None:
        if self._port.is_open:
            self._loop.remove_reader(self._port.fileno())

    def close(self) -> None:
        self._stop_reading()
        self._port.close()


async def open_tcp(host: str, port: int, timeout: float) -> Link:
    """Connect to `host`:`port` within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, link = await loop.create_connection(_TcpLink, host, port)
    return link


def open_serial(path: str, baudrate: int, parity: str, stopbits: int) -> Link:
    """Open the serial port at `path` (non-blocking, read through the event loop)."""
    port = serial.Serial(path, baudrate=baudrate, parity=parity, stopbits=stopbits, timeout=0)
    return _SerialLink(port)
