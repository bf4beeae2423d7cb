"""The rule file format hall IT writes: triggers, conditions and actions, validated.

A rule says *when* it looks (an event of a device kind and type, a change of one
field, a device going online or offline — health events of type ``online`` and
``offline`` — or a cron-like schedule in the hall's time zone), *if* what else must
hold (thresholds with hysteresis, "held for" durations, counts within a window,
the absence of other events, time of day, day type, opening hours), and *then*
what to do, with an optional *otherwise* for when a held state stops holding.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.calendar import DayType
from rules.cron import CronSchedule

Severity = Literal["urgent", "high", "normal", "low"]
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldTest(_Strict):
    """A comparison on one event field; every given part must hold."""

    eq: Any = None
    ne: Any = None
    above: float | None = None
    below: float | None = None
    in_: list[Any] | None = Field(default=None, alias="in")

    def holds(self, value: Any) -> bool:
        """Whether `value` (None when the field is missing) passes."""
        if self.eq is not None and value != self.eq:
            return False
        if self.ne is not None and value == self.ne:
            return False
        if self.in_ is not None and value not in self.in_:
            return False
        if self.above is not None or self.below is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                return False
            if self.above is not None and not value > self.above:
                return False
            if self.below is not None and not value < self.below:
                return False
        return True


class Trigger(_Strict):
    """What a rule looks at. An event trigger unless `schedule` is given."""

    kind: str | None = None
    type: str | None = None
    zone: str | None = Field(default=None, description="a zone name, or a glob such as *waiting*")
    fields: dict[str, FieldTest | str | int | float | bool] = {}
    changes: str | None = Field(
        default=None, description="look only at events where this field's value changed"
    )
    schedule: str | None = Field(default=None, description="cron: minute hour day month weekday")

    @model_validator(mode="after")
    def _schedule_or_event(self) -> Trigger:
        if self.schedule is not None:
            if self.kind or self.type or self.fields or self.changes:
                raise ValueError("a schedule trigger takes no event match")
            CronSchedule.parse(self.schedule)
        elif self.kind is None and self.type is None:
            raise ValueError("an event trigger needs a kind or a type")
        return self


class Threshold(_Strict):
    """A numeric field above (or below) a level, with a separate level to clear."""

    field: str
    above: float | None = None
    below: float | None = None
    clear_below: float | None = None
    clear_above: float | None = None

    @model_validator(mode="after")
    def _one_direction(self) -> Threshold:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        above, below = self.above, self.below
        if above is not None and self.clear_below is not None and self.clear_below > above:
            raise ValueError("clear_below must not be above 'above'")
        if below is not None and self.clear_above is not None and self.clear_above < below:
            raise ValueError("clear_above must not be below 'below'")
        return self


class CountWithin(_Strict):
    """At least `at_least` matching events within `within` seconds."""

    at_least: int = Field(ge=2)
    within: float = Field(gt=0)


class Absent(_Strict):
    """No event of this kind and type (with the same value of `same`) recently."""

    kind: str | None = None
    type: str
    same: str | None = Field(default=None, description="a field both events must share")
    within: float = Field(gt=0)


class TimeOfDay(_Strict):
    """A local time window; `start` after `end` spans midnight."""

    start: dt.time
    end: dt.time


class Conditions(_Strict):
    """What else must hold for a rule to act."""

    threshold: Threshold | None = None
    held_for: float | None = Field(default=None, gt=0, description="seconds")
    count: CountWithin | None = None
    absent: Absent | None = None
    time_of_day: TimeOfDay | None = None
    day_types: list[DayType] | None = None
    open_hours: bool | None = None

    @property
    def holds_a_state(self) -> bool:
        return self.threshold is not None or self.held_for is not None


class RaiseSpec(_Strict):
    """Open (or count again) a condition."""

    condition: str
    severity: Severity
    team: str
    message: str = "{condition} on {device_id}"
    latched: bool = Field(
        default=False, description="clears only through a clear action, never by expiry"
    )


class ClearSpec(_Strict):
    condition: str


class CommandSpec(_Strict):
    """A command for a device through the hub's command service."""

    device: str = "{device_id}"
    command: str
    args: dict[str, Any] = {}


class PublishSpec(_Strict):
    """A message on an MQTT topic (placeholders allowed in the topic)."""

    topic: str
    payload: dict[str, Any] = {}


class ZoneStateSpec(_Strict):
    zone: str = "{zone}"
    state: str
    value: Any = True


class EmitSpec(_Strict):
    """A derived event for the city, journaled on the alarm or telemetry lane."""

    type: str
    lane: Literal["alarm", "telemetry"] = "telemetry"
    data: dict[str, Any] = {}


class ActionSpec(_Strict):
    """Exactly one thing to do."""

    raise_: RaiseSpec | None = Field(default=None, alias="raise")
    clear: ClearSpec | None = None
    command: CommandSpec | None = None
    publish: PublishSpec | None = None
    set_zone_state: ZoneStateSpec | None = None
    emit: EmitSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ActionSpec:
        given = [name for name, value in self if value is not None]
        if len(given) != 1:
            raise ValueError(f"an action does exactly one thing; this one has {given or 'none'}")
        return self


class RuleSpec(_Strict):
    """One rule, as hall IT writes it."""

    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str = ""
    enabled: bool = True
    per: Literal["device", "zone"] = "device"
    when: Trigger
    if_: Conditions = Field(default=Conditions(), alias="if")
    until: Trigger | None = Field(
        default=None, description="an event that ends the state `when` started (same device)"
    )
    then: list[ActionSpec] = Field(min_length=1)
    otherwise: list[ActionSpec] = []

    @property
    def holds_a_state(self) -> bool:
        return self.if_.holds_a_state or self.until is not None

    @model_validator(mode="after")
    def _otherwise_needs_a_state(self) -> RuleSpec:
        if self.otherwise and not self.holds_a_state:
            raise ValueError("'otherwise' needs a threshold, held_for or until to stop holding")
        if self.when.schedule is not None and self.holds_a_state:
            raise ValueError("a schedule trigger has no state to hold")
        if self.until is not None and self.until.schedule is not None:
            raise ValueError("'until' is an event, not a schedule")
        return self


class RuleFile(_Strict):
    """A rule file: new rules, and changes to rules of lower layers by id."""

    rules: list[RuleSpec] = []
    overrides: dict[str, dict[str, Any]] = {}
