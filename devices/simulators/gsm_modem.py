"""A simulated GSM modem answering text-mode AT commands on a serial port.

Run on one end of a pseudo-terminal pair (``socat pty,raw,echo=0 pty,raw,echo=0``)
while the hub opens the other: it records each SMS sent, lets a test deliver a
reply (announced with ``+CMTI`` like a real modem), and can be told to fail.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import serial

logger = logging.getLogger(__name__)

_SEND = re.compile(r'^AT\+CMGS="([^"]+)"$')
_DELETE = re.compile(r"^AT\+CMGD=(\d+)$")


@dataclass
class _Inbox:
    messages: dict[int, tuple[str, str, bool]] = field(default_factory=dict)
    next_index: int = 1


class SimulatedModem:
    """Answers AT commands until `stop()`; sent messages land in `sent`."""

    def __init__(self, port: str) -> None:
        self._serial: Any = serial.serial_for_url(port, 115200, timeout=0.05)
        self.sent: list[tuple[str, str]] = []
        self.failing = False
        self._ucs2 = False
        self._inbox = _Inbox()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="simulated-modem", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._serial.close()

    def deliver_reply(self, sender: str, text: str) -> None:
        """A phone texts the modem: store it unread and announce it (+CMTI)."""
        with self._write_lock:
            index = self._inbox.next_index
            self._inbox.next_index += 1
            self._inbox.messages[index] = (sender, text, False)
        self._send(f'\r\n+CMTI: "SM",{index}\r\n')

    # -- serving ------------------------------------------------------------------

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            buffer += self._serial.read(256)
            while b"\r" in buffer:
                line, _, buffer = buffer.partition(b"\r")
                command = line.decode("ascii", "replace").strip()
                if command:
                    buffer = self._answer(command, buffer)

    def _answer(self, command: str, buffer: bytes) -> bytes:
        if self.failing:
            self._send("\r\nERROR\r\n")
            return buffer
        send = _SEND.match(command)
        if send is not None:
            return self._take_message(send.group(1), buffer)
        if command == 'AT+CMGL="REC UNREAD"':
            self._list_unread()
            return buffer
        delete = _DELETE.match(command)
        if delete is not None:
            self._inbox.messages.pop(int(delete.group(1)), None)
            self._send("\r\nOK\r\n")
            return buffer
        if command.startswith("AT+CSCS="):
            self._ucs2 = command == 'AT+CSCS="UCS2"'
        known = command in ("AT", "ATE0", "AT+CMGF=1") or command.startswith(
            ("AT+CSCS=", "AT+CSMP=")
        )
        self._send("\r\nOK\r\n" if known else "\r\nERROR\r\n")
        return buffer

    def _take_message(self, number: str, buffer: bytes) -> bytes:
        self._send("\r\n> ")
        while CTRL_Z not in buffer and not self._stop.is_set():
            buffer += self._serial.read(256)
        text, _, rest = buffer.partition(CTRL_Z)
        if self._ucs2:
            number = bytes.fromhex(number).decode("utf-16-be")
            self.sent.append((number, bytes.fromhex(text.decode()).decode("utf-16-be")))
        else:
            self.sent.append((number, text.decode("ascii", "replace")))
        self._send(f"\r\n+CMGS: {len(self.sent)}\r\n\r\nOK\r\n")
        return rest

    def _list_unread(self) -> None:
        lines = []
        for index, (sender, text, read) in sorted(self._inbox.messages.items()):
            if read:
                continue
            lines.append(f'+CMGL: {index},"REC UNREAD","{sender}",,"26/12/04,09:00:00+32"')
            lines.append(text)
            self._inbox.messages[index] = (sender, text, True)
        body = "".join(f"\r\n{line}" for line in lines)
        self._send(f"{body}\r\n\r\nOK\r\n")

    def _send(self, text: str) -> None:
        with self._write_lock:
            self._serial.write(text.encode("ascii"))
            self._serial.flush()


CTRL_Z = b"\x1a"
