"""Decoding Modbus register words per the device model, and planning block reads."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from devices.errors import RegisterDecodeError, RegisterMapError
from devices.profiles import Register
from devices.registers import (
    MAX_REGISTERS_PER_READ,
    decode_block,
    decode_register,
    encode_register,
    plan_reads,
)

# (byte_order, word_order) -> name used in most device manuals.
ORDERS = {
    ("big", "big"): "ABCD",
    ("big", "little"): "CDAB",
    ("little", "big"): "BADC",
    ("little", "little"): "DCBA",
}


def register(**fields: Any) -> Register:
    fields.setdefault("name", "value")
    fields.setdefault("address", 0)
    return Register(**fields)


# -- 16-bit values -----------------------------------------------------------------


def test_int16_is_signed_and_uint16_is_not() -> None:
    """The same word reads as -2 or 65534 depending on the declared type."""
    assert decode_register(register(type="int16"), [0xFFFE]) == -2
    assert decode_register(register(type="uint16"), [0xFFFE]) == 65534


def test_a_register_without_a_type_is_a_signed_integer() -> None:
    """Integers are signed unless the profile says unsigned: no type reads as int16."""
    assert decode_register(register(), [0xFFFF]) == -1


def test_16_bit_little_byte_order_swaps_the_bytes_of_the_word() -> None:
    """byte_order little reads 0x3412 as 0x1234 (and a negative int16 stays negative)."""
    assert decode_register(register(type="uint16", byte_order="little"), [0x3412]) == 0x1234
    assert decode_register(register(type="int16", byte_order="little"), [0xFEFF]) == -2


def test_bool_in_a_register_table_is_true_when_non_zero() -> None:
    """A bool register is false only for a zero word."""
    flag = register(type="bool")
    assert decode_register(flag, [0]) is False
    assert decode_register(flag, [1]) is True
    assert decode_register(flag, [0x0100]) is True


def test_bitfield_keeps_every_bit_across_words() -> None:
    """A two-word bitfield is one unsigned integer, in the declared word order."""
    assert decode_register(register(type="bitfield"), [0b101]) == 5
    wide = register(type="bitfield", length=2, word_order="little")
    assert decode_register(wide, [0x0001, 0x8000]) == 0x8000_0001


# -- 32 and 64-bit values in all four orders ---------------------------------------


@pytest.mark.parametrize(
    ("byte_order", "word_order", "words"),
    [
        ("big", "big", [0x1122, 0x3344]),
        ("big", "little", [0x3344, 0x1122]),
        ("little", "big", [0x2211, 0x4433]),
        ("little", "little", [0x4433, 0x2211]),
    ],
    ids=list(ORDERS.values()),
)
def test_uint32_in_every_byte_and_word_order(
    byte_order: str, word_order: str, words: list[int]
) -> None:
    """0x11223344 is recovered from each of the four layouts devices use."""
    reg = register(type="uint32", byte_order=byte_order, word_order=word_order)
    assert decode_register(reg, words) == 0x11223344


def test_negative_int32_with_word_swap_keeps_its_sign() -> None:
    """-123456 sent low word first decodes as -123456, not as a large positive number."""
    words = [0x1DC0, 0xFFFE]  # 0xFFFE1DC0, low word first
    assert decode_register(register(type="int32", word_order="little"), words) == -123456
    assert decode_register(register(type="int32"), words) == 0x1DC0FFFE  # the classic bug


@pytest.mark.parametrize(
    ("byte_order", "word_order", "words"),
    [
        ("big", "big", [0x0102, 0x0304, 0x0506, 0x0708]),
        ("big", "little", [0x0708, 0x0506, 0x0304, 0x0102]),
        ("little", "big", [0x0201, 0x0403, 0x0605, 0x0807]),
        ("little", "little", [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
    ids=list(ORDERS.values()),
)
def test_64_bit_integers_in_every_order(byte_order: str, word_order: str, words: list[int]) -> None:
    """0x0102030405060708 decodes from all four layouts, signed and unsigned."""
    orders = {"byte_order": byte_order, "word_order": word_order}
    assert decode_register(register(type="uint64", **orders), words) == 0x0102030405060708
    assert decode_register(register(type="int64", **orders), words) == 0x0102030405060708


def test_negative_int64() -> None:
    """All-ones words are -1 as int64 and the maximum as uint64."""
    assert decode_register(register(type="int64"), [0xFFFF] * 4) == -1
    assert decode_register(register(type="uint64"), [0xFFFF] * 4) == 2**64 - 1


@pytest.mark.parametrize(
    ("byte_order", "word_order", "words"),
    [
        ("big", "big", [0xC148, 0x0000]),
        ("big", "little", [0x0000, 0xC148]),
        ("little", "big", [0x48C1, 0x0000]),
        ("little", "little", [0x0000, 0x48C1]),
    ],
    ids=list(ORDERS.values()),
)
def test_float32_in_every_order(byte_order: str, word_order: str, words: list[int]) -> None:
    """-12.5 (0xC1480000) decodes from each layout, including little word order."""
    reg = register(type="float32", byte_order=byte_order, word_order=word_order)
    assert decode_register(reg, words) == -12.5


def test_float32_little_word_order_of_a_fractional_value() -> None:
    """A temperature of 21.7 sent CDAB comes back as 21.7 (to float32 precision)."""
    high, low = struct.unpack(">HH", struct.pack(">f", 21.7))
    value = decode_register(register(type="float32", word_order="little"), [low, high])
    assert value == pytest.approx(21.7, rel=1e-6)


@pytest.mark.parametrize(
    ("byte_order", "word_order", "words"),
    [
        ("big", "big", [0x3FF8, 0, 0, 0]),
        ("big", "little", [0, 0, 0, 0x3FF8]),
        ("little", "big", [0xF83F, 0, 0, 0]),
        ("little", "little", [0, 0, 0, 0xF83F]),
    ],
    ids=list(ORDERS.values()),
)
def test_float64_in_every_order(byte_order: str, word_order: str, words: list[int]) -> None:
    """1.5 (0x3FF8000000000000) decodes from each layout."""
    reg = register(type="float64", byte_order=byte_order, word_order=word_order)
    assert decode_register(reg, words) == 1.5


def test_float_nan_is_returned_as_nan() -> None:
    """A device's NaN ("no value") is decoded faithfully; the poller decides what to do."""
    value = decode_register(register(type="float32"), [0x7FC0, 0x0000])
    assert isinstance(value, float) and math.isnan(value)


# -- strings -----------------------------------------------------------------------


def test_string_strips_padding() -> None:
    """Text padded with NULs reads without them."""
    reg = register(type="string", length=4)
    assert decode_register(reg, [0x4841, 0x4C4C, 0x2D34, 0x3200]) == "HALL-42"


def test_string_with_little_byte_order() -> None:
    """Devices that swap the two characters of each word are read correctly."""
    reg = register(type="string", length=2, byte_order="little")
    assert decode_register(reg, [0x3256, 0x322E]) == "V2.2"


def test_string_that_is_not_utf8_is_an_error() -> None:
    """Bytes that are not UTF-8 raise RegisterDecodeError naming the register."""
    with pytest.raises(RegisterDecodeError, match="register label: not UTF-8"):
        decode_register(register(name="label", type="string", length=1), [0xFFFE])


# -- scale and offset --------------------------------------------------------------


def test_scale_and_offset_apply_to_numbers() -> None:
    """value = raw * scale + offset: -1234 tenths is -123.4; 100 half-degrees - 40 is 10."""
    tenths = register(type="int16", scale=0.1)
    assert decode_register(tenths, [0xFB2E]) == pytest.approx(-123.4)
    shifted = register(type="uint16", scale=0.5, offset=-40)
    assert decode_register(shifted, [100]) == pytest.approx(10.0)


def test_without_scale_integers_stay_integers() -> None:
    """An unscaled counter is an int, not a float, so totals stay exact."""
    value = decode_register(register(type="uint32"), [0xFFFF, 0xFFFF])
    assert value == 4294967295 and isinstance(value, int)


# -- bad input ---------------------------------------------------------------------


def test_wrong_word_count_is_an_error_with_device_and_register() -> None:
    """One word for an int32 raises an error naming device, register and the counts."""
    with pytest.raises(RegisterDecodeError) as caught:
        decode_register(register(name="count_in", type="int32"), [1], device_id="pc-1")
    assert caught.value.device_id == "pc-1"
    assert caught.value.register == "count_in"
    assert "needs 2 words, got 1" in str(caught.value)


def test_word_out_of_16_bit_range_is_an_error() -> None:
    """A value above 0xFFFF cannot be a Modbus word."""
    with pytest.raises(RegisterDecodeError, match="not a 16-bit word"):
        decode_register(register(type="uint16"), [0x10000])


def test_encoding_a_value_that_does_not_fit_is_an_error() -> None:
    """A negative number cannot be encoded as uint16, nor 1e40 as float32."""
    with pytest.raises(RegisterDecodeError, match="does not fit"):
        encode_register(register(type="uint16"), -1)
    with pytest.raises(RegisterDecodeError, match="does not fit"):
        encode_register(register(type="float32"), 1e40)


@pytest.mark.parametrize(("byte_order", "word_order"), list(ORDERS), ids=list(ORDERS.values()))
@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int16", -300),
        ("uint16", 60000),
        ("int32", -2_000_000_000),
        ("uint32", 4_000_000_000),
        ("int64", -(2**62)),
        ("uint64", 2**63 + 5),
        ("float32", -0.25),
        ("float64", 12345.678),
        ("bitfield", 0b1010),
        ("bool", True),
        ("string", "A005"),
    ],
)
def test_encode_then_decode_gives_the_value_back(
    kind: str, value: Any, byte_order: str, word_order: str
) -> None:
    """The simulator's encoder and the hub's decoder agree for every type and order."""
    reg = register(type=kind, byte_order=byte_order, word_order=word_order, length=2)
    assert decode_register(reg, encode_register(reg, value)) == value


# -- planning block reads ----------------------------------------------------------


def test_adjacent_registers_of_one_table_are_read_together() -> None:
    """count_in (2 words), count_out (2) and occupancy (1) make one read of 5 words."""
    blocks = plan_reads(
        [
            register(name="occupancy", address=4, type="int16"),
            register(name="count_in", address=0, type="uint32"),
            register(name="count_out", address=2, type="uint32"),
        ]
    )
    assert [(b.table, b.address, b.count) for b in blocks] == [("input", 0, 5)]
    assert [r.name for r in blocks[0].registers] == ["count_in", "count_out", "occupancy"]


def test_tables_are_never_mixed_and_gaps_split_reads() -> None:
    """A holding register is its own read; a gap wider than max_gap starts a new read."""
    registers = [
        register(name="a", address=0),
        register(name="b", address=3),
        register(name="firmware", table="holding", address=0),
    ]
    tight = plan_reads(registers)
    assert [(b.table, b.address, b.count) for b in tight] == [
        ("input", 0, 1),
        ("input", 3, 1),
        ("holding", 0, 1),
    ]
    loose = plan_reads(registers, max_gap=2)
    assert [(b.table, b.address, b.count) for b in loose] == [("input", 0, 4), ("holding", 0, 1)]


def test_a_read_never_exceeds_the_protocol_limit() -> None:
    """130 adjacent registers take two reads: 125 words, then 5."""
    registers = [register(name=f"r{i}", address=i) for i in range(130)]
    blocks = plan_reads(registers)
    assert [b.count for b in blocks] == [MAX_REGISTERS_PER_READ, 5]


def test_a_coil_must_be_a_bool() -> None:
    """A float32 declared in the coil table is refused before any read."""
    with pytest.raises(RegisterMapError, match="register speed: a coil holds one bit"):
        plan_reads([register(name="speed", table="coil", type="float32")], device_id="x")


def test_decode_block_splits_the_words_per_register() -> None:
    """One block read decodes into each register's value by its offset in the block."""
    registers = [
        register(name="count_in", address=10, type="uint32", word_order="little"),
        register(name="occupancy", address=12, type="int16"),
    ]
    (block,) = plan_reads(registers)
    assert decode_block(block, [0x1170, 0x0001, 0xFFFB]) == {"count_in": 70000, "occupancy": -5}


def test_decode_block_of_coils() -> None:
    """Coil reads come back as bits; each bool register picks its own."""
    registers = [
        register(name="door", table="coil", address=0, type="bool"),
        register(name="lamp", table="coil", address=1, type="bool"),
    ]
    (block,) = plan_reads(registers)
    assert decode_block(block, [False, True, False]) == {"door": False, "lamp": True}


def test_decode_block_refuses_a_short_reply() -> None:
    """A reply with fewer words than requested is an error, never a partial reading."""
    (block,) = plan_reads([register(name="count_in", type="uint32")])
    with pytest.raises(RegisterDecodeError, match="returned 1"):
        decode_block(block, [7], device_id="pc-1")
