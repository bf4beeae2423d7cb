"""Modbus frames built and checked by hallhub: PDUs, RTU framing, MBAP framing.

A request is one PDU (function code and data, Modbus Application Protocol v1.1b3,
§4.1) wrapped for its line:

* RTU (Modbus over Serial Line v1.02, §2.5.1): unit id, PDU, CRC-16 low byte
  first. The frame has no length field, so the reply's length is worked out from
  its function code and byte count.
* MBAP (Modbus Messaging on TCP/IP v1.0b, §3.1): transaction id, protocol id 0,
  length, unit id, PDU. The transaction id pairs a reply with its request.

Only what the poller sends is supported: reads of the four tables (functions 1-4)
and the writes a command needs (5, 6, 15, 16).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READ_FUNCTIONS = {"coil": 1, "discrete_input": 2, "holding": 3, "input": 4}
WRITE_COIL = 5
WRITE_REGISTER = 6
WRITE_REGISTERS = 16

EXCEPTION_FLAG = 0x80
MBAP_HEADER = 7  # transaction id, protocol id, length, unit id


class FrameError(ValueError):
    """Bytes that are not a valid reply; `reason` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Reply:
    """One checked reply: its unit id, function code and data (PDU after the code)."""

    unit_id: int
    function: int
    data: bytes

    @property
    def exception_code(self) -> int | None:
        """The exception code when the device refused the request, else None."""
        if self.function & EXCEPTION_FLAG:
            return self.data[0]
        return None


# -- PDUs ---------------------------------------------------------------------------


def read_request(table: str, address: int, count: int) -> bytes:
    """The PDU reading `count` values of `table` from `address`."""
    return struct.pack(">BHH", READ_FUNCTIONS[table], address, count)


def write_request(table: str, address: int, words: list[int]) -> bytes:
    """The PDU writing `words` (or one bit, for a coil) at `address`."""
    if table == "coil":
        return struct.pack(">BHH", WRITE_COIL, address, 0xFF00 if words[0] else 0x0000)
    if len(words) == 1:
        return struct.pack(">BHH", WRITE_REGISTER, address, words[0])
    payload = b"".join(struct.pack(">H", word) for word in words)
    return struct.pack(">BHHB", WRITE_REGISTERS, address, len(words), len(payload)) + payload


def registers_of(data: bytes) -> list[int]:
    """The words of a register-read reply's data (byte count, then words)."""
    size = data[0]
    return [word for (word,) in struct.iter_unpack(">H", data[1 : 1 + size])]


def bits_of(data: bytes, count: int) -> list[bool]:
    """The first `count` bits of a bit-read reply's data, least significant first."""
    packed = data[1 : 1 + data[0]]
    return [bool(packed[i // 8] >> (i % 8) & 1) for i in range(count)]


def expected_byte_count(request: bytes) -> int | None:
    """The byte count a read request's reply must carry; None for other requests."""
    function = request[0]
    if function not in READ_FUNCTIONS.values():
        return None
    count: int = struct.unpack(">H", request[3:5])[0]
    return (count + 7) // 8 if function in (1, 2) else 2 * count


def pdu_length(head: bytes) -> int | None:
    """The length of the reply PDU starting with `head`, or None if more bytes are needed.

    Exception replies are two bytes; reads carry a byte count after the code; writes
    echo address and value or quantity (four bytes after the code).
    """
    if not head:
        return None
    function = head[0]
    if function & EXCEPTION_FLAG:
        return 2
    if function in READ_FUNCTIONS.values():
        return 2 + head[1] if len(head) >= 2 else None
    if function in (WRITE_COIL, WRITE_REGISTER, WRITE_REGISTERS, 15):
        return 5
    raise FrameError(f"unknown function code {function}")


# -- RTU ----------------------------------------------------------------------------


def crc16(frame: bytes) -> int:
    """The Modbus CRC-16 (polynomial 0xA001, reflected, start 0xFFFF) of `frame`."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit_id: int, pdu: bytes) -> bytes:
    """Unit id, PDU and CRC (low byte first), ready for the wire."""
    body = bytes([unit_id]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_frame_length(head: bytes) -> int | None:
    """The whole RTU frame's length from its first bytes, or None if more are needed."""
    length = pdu_length(head[1:])
    return None if length is None else 1 + length + 2


def parse_rtu(frame: bytes) -> Reply:
    """Check one complete RTU frame's CRC and split it."""
    if len(frame) < 5:
        raise FrameError(f"frame of {len(frame)} bytes is too short")
    body, (received,) = frame[:-2], struct.unpack("<H", frame[-2:])
    if crc16(body) != received:
        raise FrameError(f"CRC {received:04x} does not match {crc16(body):04x}")
    return Reply(unit_id=body[0], function=body[1], data=body[2:])


# -- MBAP (TCP) ---------------------------------------------------------------------


def mbap_frame(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    """MBAP header and PDU, ready for a TCP stream."""
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit_id) + pdu


def parse_mbap_header(header: bytes) -> tuple[int, int, int]:
    """Transaction id, unit id and PDU length from a 7-byte MBAP header."""
    transaction_id, protocol, length, unit_id = struct.unpack(">HHHB", header)
    if protocol != 0 or not 2 <= length <= 254:
        raise FrameError(f"not an MBAP header: protocol {protocol}, length {length}")
    return transaction_id, unit_id, length - 1
