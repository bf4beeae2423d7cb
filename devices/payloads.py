"""Decoding and checking the JSON payloads MQTT devices publish.

A payload is accepted only if it matches its device model exactly: UTF-8 JSON
object, known message, every required field present with the right type and within
range, no NaN or infinity. Anything else is a `RejectedMessage` with a short reason
code (counted in metrics, kept in the dead-letter table) and a human detail.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from devices.profiles import DeviceModel, Message, PayloadField
from hub.events import Lane

# Envelope fields a device may send besides its model's fields.
ENVELOPE_FIELDS = frozenset({"msg_id", "ts"})


class RejectedMessage(Exception):
    """A device message the hub refuses; `reason` is a stable short code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """A payload that passed its model's checks."""

    message_id: str | None
    device_time: float | None
    fields: dict[str, Any]


def decode_payload(model: DeviceModel, message_name: str, payload: bytes) -> DecodedMessage:
    """Check `payload` against `model`'s definition of `message_name`."""
    assert model.mqtt is not None, "only MQTT models have payloads"
    message = model.mqtt.messages.get(message_name)
    if message is None:
        raise RejectedMessage("unknown_message", f"model {model.model} has no {message_name!r}")
    if len(payload) > model.mqtt.max_payload_bytes:
        raise RejectedMessage(
            "oversize", f"{len(payload)} bytes > {model.mqtt.max_payload_bytes} allowed"
        )

    document = _parse_json_object(payload)
    message_id = _envelope_message_id(document)
    device_time = _envelope_time(document)
    fields = _check_fields(message, document)
    return DecodedMessage(message_id, device_time, fields)


def check_fields(fields: dict[str, PayloadField], document: dict[str, Any]) -> dict[str, Any]:
    """`document` checked against `fields` as a message body is; raises RejectedMessage."""
    return _check_fields(Message(lane=Lane.HEALTH, fields=fields), document)


def _parse_json_object(payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedMessage("not_utf8", f"invalid UTF-8 at byte {exc.start}") from exc
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise RejectedMessage("not_json", str(exc)[:200]) from exc
    if not isinstance(document, dict):
        raise RejectedMessage("not_object", f"payload is a JSON {type(document).__name__}")
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number hallhub accepts")


def _envelope_message_id(document: dict[str, Any]) -> str | None:
    message_id = document.get("msg_id")
    if message_id is None:
        return None
    if not isinstance(message_id, str | int) or isinstance(message_id, bool):
        raise RejectedMessage("wrong_type", "msg_id must be a string or integer")
    text = str(message_id)
    _refuse_lone_surrogates("msg_id", text)
    if not 0 < len(text) <= 128:
        raise RejectedMessage("out_of_range", "msg_id must be 1 to 128 characters")
    return text


def _refuse_lone_surrogates(name: str, text: str) -> None:
    # JSON's \ud800 escapes decode to lone surrogates, which are not text: UTF-8
    # (and so SQLite) cannot hold them.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RejectedMessage("not_utf8", f"{name} holds a lone surrogate") from exc


def _envelope_time(document: dict[str, Any]) -> float | None:
    device_time = document.get("ts")
    if device_time is None:
        return None
    if not isinstance(device_time, int | float) or isinstance(device_time, bool):
        raise RejectedMessage("wrong_type", "ts must be a number (Unix seconds)")
    return float(device_time)


def _check_fields(message: Message, document: dict[str, Any]) -> dict[str, Any]:
    unexpected = set(document) - set(message.fields) - ENVELOPE_FIELDS
    if unexpected:
        raise RejectedMessage("unknown_field", f"unexpected fields {sorted(unexpected)}")

    fields: dict[str, Any] = {}
    for name, spec in message.fields.items():
        if name not in document or document[name] is None:
            if spec.required:
                raise RejectedMessage("missing_field", f"field {name!r} is required")
            continue
        fields[name] = _check_value(name, spec, document[name])
    return fields


def _check_value(name: str, spec: PayloadField, value: Any) -> Any:
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise RejectedMessage("wrong_type", f"{name} must be true or false")
        return value
    if spec.type in ("string", "enum"):
        return _check_text(name, spec, value)
    return _check_number(name, spec, value)


def _check_text(name: str, spec: PayloadField, value: Any) -> str:
    if not isinstance(value, str):
        raise RejectedMessage("wrong_type", f"{name} must be a string")
    _refuse_lone_surrogates(name, value)
    if len(value) > spec.max_length:
        raise RejectedMessage("out_of_range", f"{name} longer than {spec.max_length}")
    if spec.type == "enum" and value not in spec.values:
        raise RejectedMessage("out_of_range", f"{name}={value!r} is not one of {spec.values}")
    return value


def _check_number(name: str, spec: PayloadField, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedMessage("wrong_type", f"{name} must be a number")
    number: int | float = value
    if isinstance(number, float) and not math.isfinite(number):
        raise RejectedMessage("nan", f"{name} is not a finite number")
    if spec.type == "int" and isinstance(number, float):
        if not number.is_integer():
            raise RejectedMessage("wrong_type", f"{name} must be a whole number")
        number = int(number)
    if spec.min is not None and number < spec.min:
        raise RejectedMessage("out_of_range", f"{name}={number} below minimum {spec.min}")
    if spec.max is not None and number > spec.max:
        raise RejectedMessage("out_of_range", f"{name}={number} above maximum {spec.max}")
    return number
