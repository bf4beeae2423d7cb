"""Property tests (hypothesis): payload decoding, Modbus value decoding, rule expressions.

Each property holds for every input hypothesis can find, not only the examples
the other test files pick: a decoder either returns a value that obeys the model
or refuses with its own error, never anything else.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.errors import RegisterDecodeError
from devices.payloads import RejectedMessage, decode_payload
from devices.profiles import DeviceModel, Register
from devices.registers import decode_register, encode_register, word_count
from hub.events import device_event_id, fallback_event_id
from rules.actions import ClearCondition, RaiseCondition
from rules.spec import FieldTest
from tests.rulekit import Moment, engine_from, event

REASONS = {"unknown_message", "oversize", "not_utf8", "not_json", "not_object", "wrong_type",
           "out_of_range", "unknown_field", "missing_field", "nan"}  # fmt: skip
LEVELS = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"]
PAD = DeviceModel.model_validate(
    {
        "model": "prop-pad",
        "kind": "rating_pad",
        "protocol": "mqtt",
        "mqtt": {
            "max_payload_bytes": 512,
            "messages": {
                "rating": {
                    "lane": "rating",
                    "fields": {
                        "level": {"type": "enum", "values": LEVELS},
                        "window": {"type": "string", "max_length": 8},
                        "stars": {"type": "int", "min": 1, "max": 5, "required": False},
                        "score": {"type": "float", "min": -10, "max": 10, "required": False},
                        "priority": {"type": "bool", "required": False},
                    },
                }
            },
        },
    }
)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
KEYS = st.sampled_from(["level", "window", "stars", "score", "priority", "msg_id", "ts", "extra"])
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- payloads --------------------------------------------------------------------------


def decode_or_reason(payload: bytes) -> Any:
    """The decoded message, or the reason code of its refusal."""
    try:
        return decode_payload(PAD, "rating", payload)
    except RejectedMessage as refused:
        assert refused.reason in REASONS, refused.reason
        return refused.reason


@FAST
@given(st.binary(max_size=600))
def test_any_bytes_are_decoded_or_refused_with_a_known_reason(payload: bytes) -> None:
    """Random bytes never raise anything but RejectedMessage with a documented reason."""
    decode_or_reason(payload)


@FAST
@given(st.dictionaries(KEYS, JSON_VALUES, max_size=7))
def test_an_accepted_payload_obeys_every_field_rule(document: dict[str, Any]) -> None:
    """Whatever JSON object comes in, what is accepted has only valid, typed fields."""
    outcome = decode_or_reason(json.dumps(document).encode())
    if isinstance(outcome, str):
        return
    fields = outcome.fields
    assert fields["level"] in LEVELS
    assert isinstance(fields["window"], str) and len(fields["window"]) <= 8
    if "stars" in fields:
        assert type(fields["stars"]) is int and 1 <= fields["stars"] <= 5
    if "score" in fields:
        assert not isinstance(fields["score"], bool)
        assert math.isfinite(fields["score"]) and -10 <= fields["score"] <= 10
    if "priority" in fields:
        assert isinstance(fields["priority"], bool)
    assert set(fields) <= {"level", "window", "stars", "score", "priority"}


@FAST
@given(
    level=st.sampled_from(LEVELS),
    window=st.text(max_size=8),
    stars=st.none() | st.integers(1, 5),
    score=st.none() | st.floats(-10, 10),
    msg_id=st.text(min_size=1, max_size=128),
)
def test_a_valid_payload_is_accepted_with_its_values(
    level: str, window: str, stars: int | None, score: float | None, msg_id: str
) -> None:
    """Every payload inside the model's rules is accepted, values and msg_id unchanged."""
    document: dict[str, Any] = {"level": level, "window": window, "msg_id": msg_id, "ts": 1.5}
    if stars is not None:
        document["stars"] = stars
    if score is not None:
        document["score"] = score
    body = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return  # hypothesis made a lone surrogate: not text, covered by the bytes property
    if len(body) > 512:
        return

    decoded = decode_payload(PAD, "rating", body)

    assert decoded.message_id == msg_id and decoded.device_time == 1.5
    assert decoded.fields["level"] == level and decoded.fields["window"] == window
    assert decoded.fields.get("stars") == stars and decoded.fields.get("score") == score


# -- Modbus values ---------------------------------------------------------------------

INTEGER_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
ORDERS = st.sampled_from(["big", "little"])


@st.composite
def integer_register_and_value(draw: st.DrawFn) -> tuple[Register, int]:
    type_ = draw(st.sampled_from(sorted(INTEGER_RANGES)))
    low, high = INTEGER_RANGES[type_]
    register = Register(name="value", address=0, type=type_, byte_order=draw(ORDERS),
                        word_order=draw(ORDERS))  # fmt: skip
    return register, draw(st.integers(low, high))


@FAST
@given(integer_register_and_value())
def test_every_integer_survives_encode_then_decode_in_every_order(
    case: tuple[Register, int],
) -> None:
    """An integer in its type's range comes back unchanged, whatever byte and word order."""
    register, value = case
    words = encode_register(register, value)
    assert len(words) == word_count(register) and all(0 <= w <= 0xFFFF for w in words)
    assert decode_register(register, words) == value


@st.composite
def register_and_words(draw: st.DrawFn, types: list[str]) -> tuple[Register, list[int]]:
    """A register of one of `types` in any order, and any words a device could send."""
    register = Register(name="value", address=0, type=draw(st.sampled_from(types)),
                        byte_order=draw(ORDERS), word_order=draw(ORDERS))  # fmt: skip
    count = word_count(register)
    return register, draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))


@FAST
@given(register_and_words(sorted(INTEGER_RANGES)))
def test_any_words_decode_to_the_integer_that_encodes_back_to_them(
    case: tuple[Register, list[int]],
) -> None:
    """Decoding is a bijection on integer registers: words → value → the same words."""
    register, words = case
    value = decode_register(register, words)
    low, high = INTEGER_RANGES[register.type]
    assert isinstance(value, int) and low <= value <= high
    assert encode_register(register, value) == words


@FAST
@given(register_and_words(["float32", "float64"]))
def test_any_words_of_a_float_register_decode_to_the_ieee_value(
    case: tuple[Register, list[int]],
) -> None:
    """Float words decode to exactly the IEEE 754 value of their bytes in canonical order."""
    register, words = case
    byte_order, word_order = register.byte_order, register.word_order

    value = decode_register(register, words)

    ordered = words if word_order == "big" else words[::-1]
    raw = b"".join(w.to_bytes(2, "big" if byte_order == "big" else "little") for w in ordered)
    (expected,) = struct.unpack(">f" if register.type == "float32" else ">d", raw)
    assert value == expected or (math.isnan(value) and math.isnan(expected))  # type: ignore[arg-type]


@FAST
@given(st.lists(st.integers(-(2**20), 2**20), min_size=0, max_size=6))
def test_wrong_word_counts_and_out_of_range_words_are_refused(words: list[int]) -> None:
    """Words a device cannot have sent raise RegisterDecodeError, never a wrong value."""
    register = Register(name="value", address=0, type="uint32")
    valid = len(words) == 2 and all(0 <= w <= 0xFFFF for w in words)
    if valid:
        assert decode_register(register, words) == (words[0] << 16) | words[1]
    else:
        with pytest.raises(RegisterDecodeError):
            decode_register(register, words, device_id="counter-1")


@FAST
@given(raw=st.integers(0, 2**16 - 1), scale=st.floats(0.001, 1000), offset=st.floats(-1e4, 1e4))
def test_scale_and_offset_apply_as_value_times_scale_plus_offset(
    raw: int, scale: float, offset: float
) -> None:
    """A scaled register reads raw × scale + offset."""
    register = Register(name="value", address=0, type="uint16", scale=scale, offset=offset)
    assert decode_register(register, [raw]) == pytest.approx(raw * scale + offset)


# -- rule expressions ------------------------------------------------------------------

NUMBERS = st.integers(-100, 100) | st.floats(-100, 100)
SMALL = st.integers(0, 5) | st.sampled_from(LEVELS)


@FAST
@given(value=st.none() | st.booleans() | NUMBERS | st.text(max_size=3),
       above=st.none() | NUMBERS, below=st.none() | NUMBERS)  # fmt: skip
def test_above_and_below_hold_only_for_numbers_strictly_between(
    value: Any, above: float | None, below: float | None
) -> None:
    """{above, below} holds exactly for a number (never a bool) strictly inside them."""
    test = FieldTest(above=above, below=below)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    expected = (above is None and below is None) or (
        is_number and (above is None or value > above) and (below is None or value < below)
    )
    assert test.holds(value) is expected


@FAST
@given(
    value=st.none() | SMALL, eq=st.none() | SMALL, choices=st.none() | st.lists(SMALL, max_size=3)
)
def test_eq_ne_and_in_compare_as_written(value: Any, eq: Any, choices: list[Any] | None) -> None:
    """eq, ne and in hold as Python's ==, != and `in` would say, all given parts at once."""
    assert FieldTest(eq=eq).holds(value) is (eq is None or value == eq)
    assert FieldTest(ne=eq).holds(value) is (eq is None or value != eq)
    assert FieldTest.model_validate({"in": choices}).holds(value) is (
        choices is None or value in choices
    )


THRESHOLD_RULE = """
rules:
  - id: crowd
    per: zone
    when: {kind: occupancy_sensor, type: count}
    if:
      threshold: {field: occupancy, above: 40, clear_below: 30}
    then:
      - raise: {condition: crowd, severity: high, team: floor, message: "{occupancy}"}
    otherwise:
      - clear: {condition: crowd}
"""


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(0, 80), min_size=1, max_size=40))
def test_threshold_with_hysteresis_follows_its_levels(tmp_path: Path, counts: list[int]) -> None:
    """Raised when a count goes above 40, cleared only when one drops below 30: the
    firings match a two-state reference for any sequence of counts."""
    engine = engine_from(tmp_path, THRESHOLD_RULE)
    clock = Moment("2026-03-02 10:00")
    crowded = False
    for count in counts:
        clock.advance(1)
        firings = engine.evaluate(
            event("occ-1", "occupancy_sensor", "count", occupancy=count), "f1", clock.now()
        )
        actions = [type(action) for firing in firings for action in firing.actions]
        if not crowded and count > 40:
            assert actions == [RaiseCondition]
            crowded = True
        elif crowded and count < 30:
            assert actions == [ClearCondition]
            crowded = False
        else:
            assert actions == []


# -- event ids (dedupe) ----------------------------------------------------------------

IDS = st.text(min_size=1, max_size=20)


def test_event_ids_of_released_hubs_stay_the_same() -> None:
    """The city dedupes by these ids across hub upgrades: the derivation must never change."""
    assert device_event_id("pad-1", "b00t-1") == "4ec24fef-1754-5955-9e78-12276cb1292d"
    assert fallback_event_id("pad-1", "hall/pad-1/rating", b"{}") == (
        "de7dc8ba-cb87-5d7e-ba0c-c9087e4e661f"
    )


@FAST
@given(device=IDS, other_device=IDS, message=IDS, other_message=IDS)
def test_a_device_message_id_is_one_event_and_any_other_pair_another(
    device: str, other_device: str, message: str, other_message: str
) -> None:
    """The same device and msg_id give the same event id; a different pair never collides."""
    same = device_event_id(device, message)
    assert same == device_event_id(device, message)
    if (device, message) != (other_device, other_message):
        assert device_event_id(other_device, other_message) != same


@FAST
@given(device=IDS, topic=IDS, payload=st.binary(max_size=64), other=st.binary(max_size=64))
def test_without_msg_id_identical_bytes_are_one_event_and_any_change_another(
    device: str, topic: str, payload: bytes, other: bytes
) -> None:
    """A redelivery (same device, topic, bytes) is the same event; other bytes are not."""
    same = fallback_event_id(device, topic, payload)
    assert same == fallback_event_id(device, topic, payload)
    assert (fallback_event_id(device, topic, other) == same) is (other == payload)
    assert fallback_event_id(device, topic + "/x", payload) != same
    assert fallback_event_id(device + "x", topic, payload) != same
    assert device_event_id(device, topic) != same
