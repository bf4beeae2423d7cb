"""A GSM modem on a serial port: SMS out and replies in, with text-mode AT commands.

Commands follow 3GPP TS 27.005 text mode: ``AT+CMGF=1`` once, ``AT+CMGS="<number>"``
then the text ended by Ctrl-Z to send, ``AT+CMGL="REC UNREAD"`` to list new replies
and ``AT+CMGD=<index>`` to delete each one read. A ``+CMTI`` line (new message) seen
at any time makes the next poll read the inbox at once.

pyserial blocks, so every exchange runs in a worker thread under one lock: the modem
does one command at a time.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import serial

from hub.alerts.errors import ModemError

logger = logging.getLogger(__name__)

CTRL_Z = b"\x1a"
SMS_LIMIT = 160
UCS2_LIMIT = 70
_LISTED = re.compile(r'^\+CMGL: (\d+),"[^"]*","([^"]*)"')


@dataclass(frozen=True, slots=True)
class IncomingSms:
    """One message read from the modem's inbox."""

    index: int
    sender: str
    text: str


class GsmModem:
    """Text-mode SMS over one serial port."""

    def __init__(self, port: str, baudrate: int = 115200, timeout: float = 5.0) -> None:
        self.port = port
        self._baudrate = baudrate
        self._timeout = timeout
        self._serial: Any = None
        self._lock = threading.Lock()
        self.new_message_waiting = False

    def open(self) -> None:
        """Open the port and put the modem into text mode."""
        try:
            self._serial = serial.serial_for_url(self.port, self._baudrate, timeout=0.05)
        except serial.SerialException as exc:
            raise ModemError("sms", self.port, f"cannot open: {exc}") from exc
        with self._lock:
            self._command(b"AT")
            self._command(b"ATE0")
            self._command(b"AT+CMGF=1")
        logger.info("GSM modem on %s ready (text mode)", self.port)

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def send_sms(self, number: str, text: str) -> int:
        """Send one SMS; returns the modem's message reference.

        ASCII text goes as GSM 7-bit (160 characters); anything else, Chinese for a
        start, as UCS-2 (70 characters): character set "UCS2" (27.007 +CSCS), where
        the number and the text are written as hex, and data coding scheme 8
        (27.005 +CSMP), switched back to GSM afterwards.
        """
        unicode = not text.isascii()
        with self._lock:
            if unicode:
                self._command(b'AT+CSCS="UCS2"')
                self._command(b"AT+CSMP=17,167,0,8")
            try:
                lines = self._submit(number, text, unicode)
            finally:
                if unicode:
                    self._command(b"AT+CSMP=17,167,0,0")
                    self._command(b'AT+CSCS="GSM"')
        reference = next((line for line in lines if line.startswith("+CMGS:")), "+CMGS: 0")
        return int(reference.split(":", 1)[1].strip() or 0)

    def read_unread(self) -> list[IncomingSms]:
        """Read and delete every unread message in the inbox."""
        with self._lock:
            self.new_message_waiting = False
            lines = self._command(b'AT+CMGL="REC UNREAD"')
            messages = _parse_listing(lines)
            for message in messages:
                self._command(f"AT+CMGD={message.index}".encode())
        return messages

    def listen(self, seconds: float) -> bool:
        """Watch the port between commands; True once ``+CMTI`` announced a message."""
        deadline = time.monotonic() + seconds
        with self._lock:
            if self._serial is None:
                raise ModemError("sms", self.port, "modem is not open")
            pending = b""
            while time.monotonic() < deadline and not self.new_message_waiting:
                try:
                    pending += self._serial.read_until(b"\n")
                except serial.SerialException as exc:
                    raise ModemError("sms", self.port, f"read failed: {exc}") from exc
                lines = pending.split(b"\n")
                pending = lines.pop()
                if any(line.strip().startswith(b"+CMTI:") for line in lines):
                    self.new_message_waiting = True
            return self.new_message_waiting

    # -- one exchange (lock held) -------------------------------------------------

    def _submit(self, number: str, text: str, unicode: bool) -> list[str]:
        address = _ucs2_hex(number) if unicode else number
        body = _ucs2_hex(text.replace("\x1a", " ")[:UCS2_LIMIT]) if unicode else _gsm_text(text)
        self._write(f'AT+CMGS="{address}"\r'.encode())
        self._expect_prompt(number)
        self._write(body.encode("ascii") + CTRL_Z)
        return self._until_final(number)

    def _command(self, command: bytes) -> list[str]:
        self._write(command + b"\r")
        return self._until_final(command.decode())

    def _write(self, data: bytes) -> None:
        if self._serial is None:
            raise ModemError("sms", self.port, "modem is not open")
        try:
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialException as exc:
            raise ModemError("sms", self.port, f"write failed: {exc}") from exc

    def _readline(self, deadline: float, what: str) -> str:
        buffer = b""
        while time.monotonic() < deadline:
            try:
                chunk: bytes = self._serial.read_until(b"\n")
            except serial.SerialException as exc:
                raise ModemError("sms", self.port, f"read failed: {exc}") from exc
            buffer += chunk
            if buffer.endswith(b"\n") or buffer.endswith(b"> "):
                return buffer.decode("ascii", "replace").strip()
        raise ModemError("sms", self.port, f"no answer to {what} within {self._timeout} s")

    def _until_final(self, what: str) -> list[str]:
        deadline = time.monotonic() + self._timeout
        lines: list[str] = []
        while True:
            line = self._readline(deadline, what)
            if not line:
                continue
            if line.startswith("+CMTI:"):
                self.new_message_waiting = True
                continue
            if line == "OK":
                return lines
            if "ERROR" in line:
                raise ModemError("sms", self.port, f"{what} answered {line}")
            lines.append(line)

    def _expect_prompt(self, number: str) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            line = self._readline(deadline, "AT+CMGS")
            if line.startswith(">"):
                return
            if line.startswith("+CMTI:"):
                self.new_message_waiting = True
            elif "ERROR" in line:
                raise ModemError("sms", number, f"AT+CMGS answered {line}")


def _gsm_text(text: str) -> str:
    """ASCII text for GSM 7-bit, at most one SMS long; Ctrl-Z would end it early."""
    return text.replace("\x1a", " ")[:SMS_LIMIT]


def _ucs2_hex(text: str) -> str:
    """Text as the modem's "UCS2" character set wants it: UTF-16BE, upper-case hex."""
    return text.encode("utf-16-be").hex().upper()


def _parse_listing(lines: list[str]) -> list[IncomingSms]:
    messages: list[IncomingSms] = []
    header: re.Match[str] | None = None
    for line in lines:
        match = _LISTED.match(line)
        if match is not None:
            header = match
            continue
        if header is not None:
            messages.append(IncomingSms(int(header.group(1)), header.group(2), line))
            header = None
    return messages
