"""Modbus register words to values and back, and planning of block reads.

Modbus moves 16-bit words (Modbus Application Protocol v1.1b3, §4.2: each word
big-endian on the wire). Anything wider than one word, and the meaning of the
bytes inside a word, is the device maker's choice, so each `Register` of a model
says its `byte_order` (within a word) and `word_order` (across words):

    value 0x11223344       byte_order  word_order  words on the wire
    ABCD ("big-endian")    big         big         0x1122 0x3344
    CDAB ("word swap")     big         little      0x3344 0x1122
    BADC ("byte swap")     little      big         0x2211 0x4433
    DCBA ("little-endian") little      little      0x4433 0x2211

Decoding is done here with `struct`, so the rules hallhub applies are the ones
written above and nowhere else. Scale and offset turn raw counts into units:
``value = raw * scale + offset`` (not applied to strings, bitfields or bools).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from devices.errors import RegisterDecodeError, RegisterMapError
from devices.profiles import Register

logger = logging.getLogger(__name__)

RegisterValue = int | float | str | bool
Table = Literal["holding", "input", "coil", "discrete_input"]

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete_input"})

# Most values one request may carry (Modbus Application Protocol v1.1b3, §6.1-6.4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000

# struct format (big-endian, after reordering) and word count of fixed-width types.
_FORMATS: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "int64": (">q", 4),
    "uint64": (">Q", 4),
    "float32": (">f", 2),
    "float64": (">d", 4),
}


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One Modbus read request covering one or more registers of the same table."""

    table: Table
    address: int
    count: int
    registers: tuple[Register, ...]


def word_count(register: Register) -> int:
    """How many 16-bit words (or bits, in a bit table) `register` occupies."""
    if register.table in BIT_TABLES:
        return 1
    if register.type in _FORMATS:
        return _FORMATS[register.type][1]
    if register.type in ("string", "bitfield"):
        return register.length
    return 1  # bool in a register table: one word, non-zero means true


def decode_register(
    register: Register, words: Sequence[int], *, device_id: str = ""
) -> RegisterValue:
    """Turn the words read for `register` into its value, scaled and offset."""
    if register.table in BIT_TABLES:
        raise RegisterDecodeError(
            device_id, register.name, f"a {register.table} holds bits, not words"
        )
    expected = word_count(register)
    if len(words) != expected:
        raise RegisterDecodeError(
            device_id, register.name, f"{register.type} needs {expected} words, got {len(words)}"
        )

    raw = _to_bytes(register, words, device_id=device_id)

    if register.type == "bool":
        return raw != bytes(len(raw))
    if register.type == "string":
        return _decode_string(register, raw, device_id=device_id)
    if register.type == "bitfield":
        return int.from_bytes(raw, "big")
    number: int | float = struct.unpack(_FORMATS[register.type][0], raw)[0]
    return _scaled(register, number)


def encode_register(register: Register, value: RegisterValue, *, device_id: str = "") -> list[int]:
    """The words a device would send for `value` (the inverse of `decode_register`)."""
    if register.table in BIT_TABLES or register.type == "bool":
        return [1 if value else 0]
    if register.type == "string":
        raw = _encode_string(register, str(value), device_id=device_id)
    elif register.type == "bitfield":
        raw = _encode_unsigned(register, int(value), device_id=device_id)
    else:
        raw = _pack_number(register, value, device_id=device_id)
    return _from_bytes(register, raw)


def plan_reads(
    registers: Iterable[Register], *, max_gap: int = 0, device_id: str = ""
) -> list[ReadBlock]:
    """Group registers into as few reads as possible.

    Registers of one table are merged into one read when the unread words between
    them number at most `max_gap`, and the read stays within the protocol's limit.
    Keep `max_gap` at 0 for devices that answer unmapped addresses with an
    exception: one unmapped word in a merged read fails the whole read.
    """
    by_table: dict[str, list[Register]] = {}
    for register in registers:
        _check_mappable(register, device_id=device_id)
        by_table.setdefault(register.table, []).append(register)

    blocks: list[ReadBlock] = []
    for table, members in by_table.items():
        blocks.extend(_plan_table(table, members, max_gap))
    return blocks


def decode_block(
    block: ReadBlock, values: Sequence[int] | Sequence[bool], *, device_id: str = ""
) -> dict[str, RegisterValue]:
    """Decode every register of `block` from the values its read returned."""
    if len(values) < block.count:
        raise RegisterDecodeError(
            device_id,
            block.registers[0].name,
            f"read of {block.count} at {block.table} {block.address} returned {len(values)}",
        )

    decoded: dict[str, RegisterValue] = {}
    for register in block.registers:
        start = register.address - block.address
        if block.table in BIT_TABLES:
            decoded[register.name] = bool(values[start])
        else:
            words = [int(word) for word in values[start : start + word_count(register)]]
            decoded[register.name] = decode_register(register, words, device_id=device_id)
    return decoded


# -- byte and word order ----------------------------------------------------------


def _to_bytes(register: Register, words: Sequence[int], *, device_id: str) -> bytes:
    """Words as received -> bytes most significant first."""
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise RegisterDecodeError(device_id, register.name, f"{word} is not a 16-bit word")
    ordered = list(words)
    if register.word_order == "little" and register.type != "string":
        ordered.reverse()
    word_format = "<H" if register.byte_order == "little" else ">H"
    return b"".join(struct.pack(word_format, word) for word in ordered)


def _from_bytes(register: Register, raw: bytes) -> list[int]:
    """Bytes most significant first -> words as a device would send them."""
    word_format = "<H" if register.byte_order == "little" else ">H"
    words = [struct.unpack(word_format, raw[i : i + 2])[0] for i in range(0, len(raw), 2)]
    if register.word_order == "little" and register.type != "string":
        words.reverse()
    return words


# -- numbers ----------------------------------------------------------------------


def _scaled(register: Register, raw: int | float) -> int | float:
    if register.scale == 1.0 and register.offset == 0.0:
        return raw
    return raw * register.scale + register.offset


def _pack_number(register: Register, value: RegisterValue, *, device_id: str) -> bytes:
    if isinstance(value, str):
        raise RegisterDecodeError(device_id, register.name, f"{value!r} is not a number")
    struct_format = _FORMATS[register.type][0]
    unscaled = register.scale == 1.0 and register.offset == 0.0
    # Integers skip the float round trip, which would lose precision above 2**53.
    raw: int | float = (
        value if unscaled and isinstance(value, int) else (value - register.offset) / register.scale
    )
    try:
        if register.type.startswith("float"):
            return struct.pack(struct_format, raw)
        return struct.pack(struct_format, round(raw))
    except (struct.error, OverflowError) as exc:
        raise RegisterDecodeError(
            device_id, register.name, f"{value} does not fit in {register.type}"
        ) from exc


def _encode_unsigned(register: Register, value: int, *, device_id: str) -> bytes:
    try:
        return value.to_bytes(2 * register.length, "big")
    except OverflowError as exc:
        raise RegisterDecodeError(
            device_id, register.name, f"{value} does not fit in {register.length} words"
        ) from exc


# -- strings ----------------------------------------------------------------------


def _decode_string(register: Register, raw: bytes, *, device_id: str) -> str:
    # Devices pad fixed-length text with NULs or spaces.
    text = raw.rstrip(b"\x00 ")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RegisterDecodeError(
            device_id, register.name, f"not UTF-8 text at byte {exc.start}"
        ) from exc


def _encode_string(register: Register, text: str, *, device_id: str) -> bytes:
    raw = text.encode("utf-8")
    size = 2 * register.length
    if len(raw) > size:
        raise RegisterDecodeError(device_id, register.name, f"{text!r} is longer than {size} bytes")
    return raw.ljust(size, b"\x00")


# -- planning ---------------------------------------------------------------------


def _check_mappable(register: Register, *, device_id: str) -> None:
    if register.table in BIT_TABLES and register.type != "bool":
        raise RegisterMapError(
            device_id, register.name, f"a {register.table} holds one bit; type must be bool"
        )
    end = register.address + word_count(register) - 1
    if end > 0xFFFF:
        raise RegisterMapError(
            device_id, register.name, f"runs past the last address (ends at {end})"
        )


def _plan_table(table: str, members: list[Register], max_gap: int) -> list[ReadBlock]:
    limit = MAX_BITS_PER_READ if table in BIT_TABLES else MAX_REGISTERS_PER_READ
    ordered = sorted(members, key=lambda register: register.address)

    blocks: list[ReadBlock] = []
    current: list[Register] = []
    start = end = 0  # end: one past the last word of the block being built
    for register in ordered:
        register_end = register.address + word_count(register)
        fits = register.address - end <= max_gap and max(end, register_end) - start <= limit
        if current and fits:
            current.append(register)
            end = max(end, register_end)
            continue
        if current:
            blocks.append(_block(start, end, current))
        current, start, end = [register], register.address, register_end
    if current:
        blocks.append(_block(start, end, current))
    return blocks


def _block(start: int, end: int, members: list[Register]) -> ReadBlock:
    return ReadBlock(
        table=members[0].table, address=start, count=end - start, registers=tuple(members)
    )
