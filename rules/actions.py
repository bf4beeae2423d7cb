"""What a rule decides to do: plain values the hub applies and the journal records.

Messages, topics and targets may hold ``{placeholders}`` filled from the firing's
context: the event's fields, ``device_id``, ``zone``, ``kind``, and ``count`` for
counted rules. An unknown placeholder stays visible rather than failing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rules.spec import ActionSpec, Severity


@dataclass(frozen=True, slots=True)
class RaiseCondition:
    """Decision: this condition holds on this device."""

    rule_id: str
    device_id: str
    condition: str
    severity: Severity
    team: str
    message: str
    event_id: str
    latched: bool = False


@dataclass(frozen=True, slots=True)
class ClearCondition:
    """Decision: this condition no longer holds on this device."""

    rule_id: str
    device_id: str
    condition: str
    event_id: str


@dataclass(frozen=True, slots=True)
class CommandDevice:
    """Decision: send `command` to a device through the hub's command service."""

    rule_id: str
    device_id: str
    command: str
    args: tuple[tuple[str, Any], ...]
    event_id: str


@dataclass(frozen=True, slots=True)
class PublishMessage:
    """Decision: publish a JSON message on an MQTT topic."""

    rule_id: str
    topic: str
    payload: tuple[tuple[str, Any], ...]
    event_id: str


@dataclass(frozen=True, slots=True)
class SetZoneState:
    """Decision: a zone's named state takes a value (e.g. crowded = true)."""

    rule_id: str
    zone: str
    state: str
    value: Any
    event_id: str


@dataclass(frozen=True, slots=True)
class EmitEvent:
    """Decision: journal a derived event, which the uplink sends to the city."""

    rule_id: str
    lane: str
    type: str
    data: tuple[tuple[str, Any], ...]
    event_id: str
    about: str = field(default="")


Action = RaiseCondition | ClearCondition | CommandDevice | PublishMessage | SetZoneState | EmitEvent


def action_to_json(action: Action) -> dict[str, Any]:
    """The journaled form of an action, with its kind."""
    body = dataclasses.asdict(action)
    for name in ("args", "payload", "data"):
        if name in body:
            body[name] = dict(body[name])
    return {"action": type(action).__name__, **body}


_ACTION_TYPES: dict[str, type[Action]] = {
    kind.__name__: kind
    for kind in (RaiseCondition, ClearCondition, CommandDevice, PublishMessage, SetZoneState,
                 EmitEvent)
}  # fmt: skip


def action_from_json(body: dict[str, Any]) -> Action:
    """The action a journaled form describes (the inverse of `action_to_json`)."""
    fields = dict(body)
    kind = _ACTION_TYPES[fields.pop("action")]
    for name in ("args", "payload", "data"):
        if name in fields:
            fields[name] = tuple(fields[name].items())
    return kind(**fields)


def build_action(rule_id: str, spec: ActionSpec, context: dict[str, Any], cause: str) -> Action:
    """Turn one action of a rule into a decision, filling placeholders from `context`."""
    device = str(context.get("device_id", ""))
    if spec.raise_ is not None:
        raised = spec.raise_
        message = fill(raised.message, {**context, "condition": raised.condition})
        return RaiseCondition(
            rule_id, device, raised.condition, raised.severity, raised.team, message, cause,
            raised.latched,
        )  # fmt: skip
    if spec.clear is not None:
        return ClearCondition(rule_id, device, spec.clear.condition, cause)
    if spec.command is not None:
        target = fill(spec.command.device, context)
        return CommandDevice(
            rule_id, target, spec.command.command, _frozen(spec.command.args, context), cause
        )
    if spec.publish is not None:
        topic = fill(spec.publish.topic, context)
        return PublishMessage(rule_id, topic, _frozen(spec.publish.payload, context), cause)
    if spec.set_zone_state is not None:
        zone = fill(spec.set_zone_state.zone, context)
        return SetZoneState(
            rule_id, zone, spec.set_zone_state.state, spec.set_zone_state.value, cause
        )
    assert spec.emit is not None
    data = _frozen(spec.emit.data, context)
    return EmitEvent(rule_id, spec.emit.lane, spec.emit.type, data, cause, device)


def fill(text: str, context: dict[str, Any]) -> str:
    """`text` with its placeholders filled; unknown ones are left as written."""
    return text.format_map(_Blank(context))


def _frozen(values: dict[str, Any], context: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    filled = {name: fill(v, context) if isinstance(v, str) else v for name, v in values.items()}
    return tuple(sorted(filled.items()))


class _Blank(dict[str, Any]):
    """Leaves unknown placeholders in a message visible instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
