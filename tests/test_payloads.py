"""Payload checks: what a device may send, and the reason code for what it may not."""

from __future__ import annotations

import pytest

from devices.payloads import RejectedMessage, decode_payload
from devices.profiles import DeviceModel

PAD = DeviceModel.model_validate(
    {
        "model": "test-pad",
        "kind": "rating_pad",
        "protocol": "mqtt",
        "mqtt": {
            "max_payload_bytes": 200,
            "messages": {
                "rating": {
                    "lane": "rating",
                    "fields": {
                        "level": {"type": "enum", "values": ["非常满意", "满意", "不满意"]},
                        "window": {"type": "string", "max_length": 8},
                        "stars": {"type": "int", "min": 1, "max": 5, "required": False},
                        "score": {"type": "float", "required": False},
                    },
                }
            },
        },
    }
)


def decode(payload: bytes):  # type: ignore[no-untyped-def]
    return decode_payload(PAD, "rating", payload)


def test_good_payload_keeps_fields_message_id_and_device_time() -> None:
    """A valid rating yields its fields, its message id and the device's clock reading."""
    decoded = decode(
        '{"msg_id": "b1-9", "ts": 1767225600.5, "level": "满意", "window": "W3"}'.encode()
    )

    assert decoded.fields == {"level": "满意", "window": "W3"}
    assert decoded.message_id == "b1-9"
    assert decoded.device_time == 1767225600.5


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not utf-8", "not_utf8"),
        (b"level=good", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"window": "W3"}', "missing_field"),
        (b'{"level": 5, "window": "W3"}', "wrong_type"),
        ('{"level": "好", "window": "W3"}'.encode(), "out_of_range"),
        ('{"level": "满意", "window": "W3", "stars": 9}'.encode(), "out_of_range"),
        ('{"level": "满意", "window": "W3", "stars": true}'.encode(), "wrong_type"),
        ('{"level": "满意", "window": "W3", "score": NaN}'.encode(), "not_json"),
        ('{"level": "满意", "window": "W3", "score": 1e999}'.encode(), "nan"),
        ('{"level": "满意", "window": "W3", "extra": 1}'.encode(), "unknown_field"),
        ('{"level": "满意", "window": "WINDOW-TOO-LONG"}'.encode(), "out_of_range"),
        (b'{"level": "x", "window": "' + b"w" * 300 + b'"}', "oversize"),
        ('{"msg_id": [1], "level": "满意", "window": "W3"}'.encode(), "wrong_type"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    """Each kind of bad input is refused with its own stable reason code."""
    with pytest.raises(RejectedMessage) as refused:
        decode(payload)
    assert refused.value.reason == reason


def test_unknown_message_name_is_refused() -> None:
    """A topic naming a message the model does not have is refused, not guessed at."""
    with pytest.raises(RejectedMessage) as refused:
        decode_payload(PAD, "reboot", b"{}")
    assert refused.value.reason == "unknown_message"
