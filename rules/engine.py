"""The local rules engine: committed events in, actions out, no network needed.

Rules are data (YAML). A rule matches events by device kind, event type, zone and
field values, and then raises or clears a condition. The engine only decides; the
hub applies what it decides (opening and closing alerts), so the same events always
give the same actions, whether or not the city link is up.

Events replayed from retained state (``retained``) never fire a rule: a "pressed"
that the broker replays because the hub resubscribed is not a new press.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from hub.errors import ConfigError
from hub.events import Event
from hub.yamlfile import describe_errors, read_yaml

logger = logging.getLogger(__name__)

Severity = Literal["urgent", "high", "normal", "low"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Which events a rule looks at. Every given part must match."""

    kind: str | None = None
    type: str | None = None
    zone: str | None = None
    fields: dict[str, Any] = {}


class RaiseSpec(_Strict):
    """Open (or count again) a condition on the event's device."""

    condition: str
    severity: Severity
    team: str
    message: str = "{condition} on {device_id}"


class ClearSpec(_Strict):
    """Close a condition on the event's device."""

    condition: str


class RuleSpec(_Strict):
    """One rule, as hall IT writes it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    enabled: bool = True
    when: Match
    raise_: RaiseSpec | None = Field(default=None, alias="raise")
    clear: ClearSpec | None = None


class RulePack(_Strict):
    """A rule file."""

    rules: list[RuleSpec]


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


@dataclass(frozen=True, slots=True)
class ClearCondition:
    """Decision: this condition no longer holds on this device."""

    rule_id: str
    device_id: str
    condition: str
    event_id: str


Action = RaiseCondition | ClearCondition


def shipped_pack() -> Path:
    """The hall rule pack that ships with hallhub."""
    return Path(str(resources.files("rules") / "pack" / "hall.yaml"))


def load_rule_file(path: Path) -> list[RuleSpec]:
    """Load and validate one rule file."""
    data, lines = read_yaml(path)
    try:
        return RulePack.model_validate(data).rules
    except pydantic.ValidationError as exc:
        raise ConfigError(str(path), describe_errors(exc, lines)) from exc


class RulesEngine:
    """Evaluates committed events against the loaded rules, in sequence order."""

    def __init__(self, rules: list[RuleSpec]) -> None:
        ids = [rule.id for rule in rules]
        duplicates = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicates:
            raise ConfigError(
                "rules", [f"rule id {rule_id!r} is used twice" for rule_id in duplicates]
            )
        self.rules = [rule for rule in rules if rule.enabled]

    def teams(self) -> set[str]:
        """The crew teams these rules alert."""
        return {rule.raise_.team for rule in self.rules if rule.raise_ is not None}

    @classmethod
    def from_files(cls, paths: list[Path]) -> RulesEngine:
        rules: list[RuleSpec] = []
        for path in paths:
            rules.extend(load_rule_file(path))
        return cls(rules)

    def evaluate(self, event: Event, zone: str) -> list[Action]:
        """Every action the rules take for `event` from a device in `zone`."""
        if event.retained:
            return []
        actions: list[Action] = []
        for rule in self.rules:
            if _matches(rule.when, event, zone):
                actions.extend(_decide(rule, event, zone))
        return actions


def _matches(match: Match, event: Event, zone: str) -> bool:
    if match.kind is not None and match.kind != event.kind:
        return False
    if match.type is not None and match.type != event.type:
        return False
    if match.zone is not None and match.zone != zone:
        return False
    return all(event.data.get(name) == value for name, value in match.fields.items())


def _decide(rule: RuleSpec, event: Event, zone: str) -> list[Action]:
    actions: list[Action] = []
    if rule.raise_ is not None:
        spec = rule.raise_
        text = spec.message.format_map(
            _Blank(device_id=event.device_id, zone=zone, condition=spec.condition, **event.data)
        )
        actions.append(
            RaiseCondition(
                rule.id,
                event.device_id,
                spec.condition,
                spec.severity,
                spec.team,
                text,
                event.event_id,
            )
        )
    if rule.clear is not None:
        actions.append(
            ClearCondition(rule.id, event.device_id, rule.clear.condition, event.event_id)
        )
    return actions


class _Blank(dict[str, Any]):
    """Leaves unknown placeholders in a message visible instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
