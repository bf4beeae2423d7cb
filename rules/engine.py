"""The local rules engine: committed events in, firings out, no network needed.

The engine only decides; the hub applies what it decides (alerts, commands,
messages, zone states, derived events) and journals every firing. Given the same
events in sequence order and the same times, it makes the same decisions, which is
what lets `rules replay` preview a candidate rule set against the journal.

Two kinds of rule:

* **each**: a plain match fires on every matching event (a toilet call, a bad
  rating); ``changes`` narrows it to events where a field changed, ``count`` to the
  N-th match within a window.
* **state**: with a ``threshold`` or ``held_for``, the rule tracks a level per
  device (or zone). It fires ``then`` once the level has held for ``held_for`` and
  the time gates are open, and ``otherwise`` when the level stops holding.

Durations run on the monotonic clock, so a wall-clock jump neither fires nor
strands a timer; schedules follow the wall clock in the hall's time zone and are
re-planned when the wall clock jumps. Events replayed from retained state
(``retained``) never fire a rule, and derived events never feed back into rules.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hub.calendar import CalendarError, HallCalendar
from hub.errors import ConfigError
from hub.events import Event, Lane
from rules.actions import Action, ClearCondition, RaiseCondition, build_action
from rules.cron import CronSchedule
from rules.layers import load_layers, shipped_pack
from rules.spec import Conditions, FieldTest, RuleSpec, Threshold, Trigger

logger = logging.getLogger(__name__)

# Kept importable from here, where they used to live.
__all__ = [
    "Action",
    "ClearCondition",
    "Firing",
    "RaiseCondition",
    "RuleTime",
    "RulesEngine",
    "shipped_pack",
]

DERIVED_KIND = "rule"  # kind of the events rules emit; rules never look at them
SCHEDULE_KEY = "hall"
JUMP_TOLERANCE = 2.0  # seconds of wall/monotonic drift taken as a wall-clock jump
GATE_RECHECK = 30.0  # seconds between re-checks of a due timer waiting for open hours

StateKey = tuple[str, str]
Phase = Literal["then", "otherwise"]


@dataclass(frozen=True, slots=True)
class RuleTime:
    """The moment a decision is made: monotonic for durations, wall for the calendar."""

    monotonic: float
    wall: float
    synchronised: bool = True


@dataclass(frozen=True, slots=True)
class Firing:
    """One rule acting once: what it did and which events made it."""

    rule_id: str
    key: str
    phase: Phase
    trigger_ids: tuple[str, ...]
    actions: tuple[Action, ...]

    def signature(self) -> tuple[Any, ...]:
        """What a firing did, for comparing two rule sets over the same events."""
        return (self.rule_id, self.key, self.phase, self.trigger_ids, self.actions)


@dataclass(slots=True)
class KeyState:
    """What a rule remembers about one device or zone; stored as JSON in SQLite."""

    holds: bool = False
    fired: bool = False
    deadline: float | None = None
    trigger_ids: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    last: Any = None
    seen_last: bool = False
    hits: list[float] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyState:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A rule that may look at events of one kind, type and zone, with what is known."""

    rule: RuleSpec
    selects_when: bool
    selects_until: bool
    stateful: bool


@dataclass(slots=True)
class _Plan:
    """The next run of a schedule, and the wall/monotonic offset it was planned with."""

    due_monotonic: float
    due_wall: float
    offset: float


class RulesEngine:
    """Evaluates committed events against the loaded rules, in sequence order."""

    def __init__(self, rules: list[RuleSpec], calendar: HallCalendar | None = None) -> None:
        _refuse_duplicates(rules)
        self.rules = [rule for rule in rules if rule.enabled]
        self.calendar = calendar or HallCalendar()
        self.states: dict[StateKey, KeyState] = {}
        self._index: dict[tuple[str | None, str | None], list[RuleSpec]] = {}
        self._cache: dict[tuple[str, str, str], list[_Candidate]] = {}
        self._by_id = {rule.id: rule for rule in self.rules}
        self._scheduled = [rule for rule in self.rules if rule.when.schedule is not None]
        self._crons = {
            rule.id: CronSchedule.parse(rule.when.schedule or "") for rule in self._scheduled
        }
        self._watching_absence = [rule for rule in self.rules if rule.if_.absent is not None]
        self._plans: dict[str, _Plan] = {}
        self._pending: dict[StateKey, float] = {}
        self._earliest = math.inf
        self._dirty: set[StateKey] = set()
        for rule in self.rules:
            for trigger in (rule.when, rule.until):
                if trigger is not None and trigger.schedule is None:
                    self._index.setdefault((trigger.kind, trigger.type), []).append(rule)

    def teams(self) -> set[str]:
        """The crew teams these rules alert."""
        actions = [
            action for rule in self.rules for action in (*rule.then, *(rule.otherwise or ()))
        ]
        return {action.raise_.team for action in actions if action.raise_ is not None}

    @classmethod
    def from_files(cls, paths: list[Path], calendar: HallCalendar | None = None) -> RulesEngine:
        return cls(load_layers([("hall", path) for path in paths]).rules, calendar)

    # -- public API ------------------------------------------------------------------

    def evaluate(self, event: Event, zone: str, now: RuleTime) -> list[Firing]:
        """Every firing due up to `now`, then every firing `event` causes."""
        firings = self.tick(now)
        if event.kind == DERIVED_KIND:  # a rule's own output must not feed rules: no loops
            return firings
        for rule in self._watching_absence:
            self._note_presence(rule, event, now)
        for candidate in self._candidates(event.kind, event.type, zone):
            firings.extend(self._step(candidate, event, zone, now))
        return firings

    def tick(self, now: RuleTime) -> list[Firing]:
        """Firings of timers and schedules that are due at `now`."""
        firings: list[Firing] = []
        if self._pending and now.monotonic >= self._earliest:
            due = sorted(key for key, at in self._pending.items() if at <= now.monotonic)
            for key in due:
                firings.extend(self._fire_if_due(key, now))
            self._earliest = min(self._pending.values(), default=math.inf)
        if self._scheduled:
            firings.extend(self._run_schedules(now))
        return firings

    def take_dirty(self) -> dict[StateKey, dict[str, Any]]:
        """States changed since the last call, for the store to persist."""
        changed = {key: self.states[key].to_json() for key in sorted(self._dirty)}
        self._dirty.clear()
        return changed

    def restore(self, saved: dict[StateKey, dict[str, Any]]) -> None:
        """Take back states persisted before a restart (timers included)."""
        known = {rule.id for rule in self.rules}
        for key, data in saved.items():
            if key[0] in known:
                self._set_state(key, KeyState.from_json(data))

    def adopt(self, previous: RulesEngine) -> None:
        """Carry the running states of rules that survive a reload."""
        self.restore({key: state.to_json() for key, state in previous.states.items()})

    # -- stepping one rule -----------------------------------------------------------

    def _candidates(self, kind: str, type_: str, zone: str) -> list[_Candidate]:
        """Rules that may look at this kind, type and zone; cached, in rule order."""
        cached = self._cache.get((kind, type_, zone))
        if cached is None:
            probe = Event("", 0, Lane.TELEMETRY, 0, "", "", kind, type_)
            found = {
                id(rule): rule
                for pair in ((kind, type_), (kind, None), (None, type_), (None, None))
                for rule in self._index.get(pair, [])
            }
            cached = [
                _Candidate(
                    rule,
                    _selects(rule.when, probe, zone),
                    rule.until is not None and _selects(rule.until, probe, zone),
                    rule.holds_a_state,
                )
                for rule in self.rules
                if id(rule) in found
            ]
            cached = [c for c in cached if c.selects_when or c.selects_until]
            self._cache[(kind, type_, zone)] = cached
        return cached

    def _step(self, candidate: _Candidate, event: Event, zone: str, now: RuleTime) -> list[Firing]:
        rule = candidate.rule
        until = rule.until
        ends = (
            candidate.selects_until and until is not None and _fields_hold(until.fields, event.data)
        )
        if not ends and not candidate.selects_when:
            return []
        matched = not ends and _fields_hold(rule.when.fields, event.data)
        if not matched and not candidate.stateful and rule.when.changes is None:
            return []  # the common case, decided without touching any state
        key = (rule.id, event.device_id if rule.per == "device" else zone)
        if rule.when.changes is not None and not self._changed(key, rule.when.changes, event):
            return []
        if event.retained:
            return []
        if candidate.stateful:
            return self._step_state(rule, key, matched, event, zone, now)
        if not matched:
            return []
        return self._step_each(rule, key, event, zone, now)

    def _changed(self, key: StateKey, name: str, event: Event) -> bool:
        if name not in event.data:
            return False
        state = self._state(key)
        value = event.data[name]
        changed = not state.seen_last or state.last != value
        state.seen_last, state.last = True, value
        self._dirty.add(key)
        return changed

    def _step_each(
        self, rule: RuleSpec, key: StateKey, event: Event, zone: str, now: RuleTime
    ) -> list[Firing]:
        context = _context(event, zone)
        count = rule.if_.count
        if count is not None:
            state = self._state(key)
            state.hits = [at for at in state.hits if at > now.monotonic - count.within]
            state.hits.append(now.monotonic)
            self._dirty.add(key)
            if len(state.hits) < count.at_least:
                return []
            context["count"] = len(state.hits)
            state.hits = []
        if not self._gates_open(rule, key, context, now):
            return []
        return [self._fire(rule, key, "then", (event.event_id,), context)]

    def _step_state(
        self, rule: RuleSpec, key: StateKey, matched: bool, event: Event, zone: str, now: RuleTime
    ) -> list[Firing]:
        state = self._state(key)
        level = _level(rule.if_.threshold, state.holds, event.data) if matched else False
        if level is None:
            return []  # the event does not carry the thresholded field
        self._dirty.add(key)
        if level:
            state.context = _context(event, zone)
            if not state.holds:
                state.holds, state.fired = True, False
                state.trigger_ids = [event.event_id]
                state.deadline = now.monotonic + (rule.if_.held_for or 0.0)
                self._wait(key, state.deadline)
            return self._fire_if_due(key, now)
        if not state.holds:
            return []
        fired = state.fired
        state.holds, state.fired, state.deadline = False, False, None
        self._pending.pop(key, None)
        if not fired or not rule.otherwise:
            return []
        return [self._fire(rule, key, "otherwise", (event.event_id,), state.context)]

    def _fire_if_due(self, key: StateKey, now: RuleTime) -> list[Firing]:
        state = self.states.get(key)
        rule = self._rule(key[0])
        if state is None or rule is None or state.deadline is None or state.fired:
            self._pending.pop(key, None)
            return []
        if now.monotonic < state.deadline:
            return []
        if not self._gates_open(rule, key, state.context, now):
            self._wait(key, now.monotonic + GATE_RECHECK)
            return []
        state.fired = True
        self._pending.pop(key, None)
        self._dirty.add(key)
        return [self._fire(rule, key, "then", tuple(state.trigger_ids), state.context)]

    # -- gates -----------------------------------------------------------------------

    def _gates_open(
        self, rule: RuleSpec, key: StateKey, context: dict[str, Any], now: RuleTime
    ) -> bool:
        gates = rule.if_
        if gates.absent is not None and not self._absent(rule, key, context, now):
            return False
        if gates.time_of_day is None and gates.day_types is None and gates.open_hours is None:
            return True
        try:
            return _calendar_gates(self.calendar, gates, now)
        except CalendarError as exc:
            # Fail open: a missing holiday table must not silence safety rules.
            logger.warning("rule %s: calendar cannot answer (%s); acting anyway", rule.id, exc)
            return True

    def _note_presence(self, rule: RuleSpec, event: Event, now: RuleTime) -> None:
        absent = rule.if_.absent
        assert absent is not None
        if absent.type != event.type or absent.kind not in (None, event.kind):
            return
        value = "" if absent.same is None else str(event.data.get(absent.same, ""))
        key = (rule.id, "~seen")
        self._state(key).seen[value] = now.monotonic
        self._dirty.add(key)

    def _absent(
        self, rule: RuleSpec, key: StateKey, context: dict[str, Any], now: RuleTime
    ) -> bool:
        absent = rule.if_.absent
        assert absent is not None
        value = "" if absent.same is None else str(context.get(absent.same, ""))
        seen = self.states.get((rule.id, "~seen"))
        last = seen.seen.get(value) if seen is not None else None
        return last is None or now.monotonic - last > absent.within

    # -- schedules -------------------------------------------------------------------

    def _run_schedules(self, now: RuleTime) -> list[Firing]:
        firings: list[Firing] = []
        for rule in self._scheduled:
            plan = self._plans.get(rule.id)
            if plan is not None and abs(now.wall - now.monotonic - plan.offset) > JUMP_TOLERANCE:
                logger.warning("wall clock jumped; re-planning schedule of rule %s", rule.id)
                plan = None
            if plan is None:
                self._plans[rule.id] = self._plan(rule, now)
                continue
            if now.monotonic < plan.due_monotonic:
                continue
            key = (rule.id, SCHEDULE_KEY)
            context = {"device_id": SCHEDULE_KEY, "zone": "", "due": plan.due_wall}
            if now.synchronised and self._gates_open(rule, key, context, now):
                firings.append(self._fire(rule, key, "then", (), context))
            self._plans[rule.id] = self._plan(rule, now)
        return firings

    def _plan(self, rule: RuleSpec, now: RuleTime) -> _Plan:
        local = self.calendar.at_wall(now.wall)
        due_wall = self._crons[rule.id].next_after(local).timestamp()
        return _Plan(now.monotonic + (due_wall - now.wall), due_wall, now.wall - now.monotonic)

    # -- helpers ---------------------------------------------------------------------

    def _fire(
        self,
        rule: RuleSpec,
        key: StateKey,
        phase: Phase,
        trigger_ids: tuple[str, ...],
        context: dict[str, Any],
    ) -> Firing:
        specs = rule.then if phase == "then" else rule.otherwise
        cause = trigger_ids[0] if trigger_ids else ""
        actions = tuple(build_action(rule.id, spec, context, cause) for spec in specs)
        return Firing(rule.id, key[1], phase, trigger_ids, actions)

    def _state(self, key: StateKey) -> KeyState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = KeyState()
        return state

    def _set_state(self, key: StateKey, state: KeyState) -> None:
        self.states[key] = state
        if state.holds and not state.fired and state.deadline is not None:
            self._wait(key, state.deadline)

    def _wait(self, key: StateKey, at: float) -> None:
        self._pending[key] = at
        self._earliest = min(self._earliest, at)

    def _rule(self, rule_id: str) -> RuleSpec | None:
        return self._by_id.get(rule_id)


def _refuse_duplicates(rules: Iterable[RuleSpec]) -> None:
    seen: set[str] = set()
    twice: set[str] = set()
    for rule in rules:
        (twice if rule.id in seen else seen).add(rule.id)
    if twice:
        raise ConfigError(
            "rules", [f"rule id {rule_id!r} is used twice" for rule_id in sorted(twice)]
        )


def _selects(trigger: Trigger, event: Event, zone: str) -> bool:
    """Whether `event` is one the trigger looks at (kind, type, zone), fields aside."""
    if trigger.kind is not None and trigger.kind != event.kind:
        return False
    if trigger.type is not None and trigger.type != event.type:
        return False
    return trigger.zone is None or fnmatch.fnmatchcase(zone, trigger.zone)


def _fields_hold(
    tests: dict[str, FieldTest | str | int | float | bool], data: dict[str, Any]
) -> bool:
    for name, test in tests.items():
        value = data.get(name)
        if isinstance(test, FieldTest):
            if not test.holds(value):
                return False
        elif value != test:
            return False
    return True


def _level(threshold: Threshold | None, holding: bool, data: dict[str, Any]) -> bool | None:
    """Whether a thresholded level holds, with hysteresis; None if the field is missing."""
    if threshold is None:
        return True
    value = data.get(threshold.field)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if threshold.above is not None:
        clear = threshold.clear_below if threshold.clear_below is not None else threshold.above
        return value >= clear if holding else value > threshold.above
    assert threshold.below is not None
    clear = threshold.clear_above if threshold.clear_above is not None else threshold.below
    return value <= clear if holding else value < threshold.below


def _calendar_gates(calendar: HallCalendar, gates: Conditions, now: RuleTime) -> bool:
    local = calendar.at_wall(now.wall)
    if gates.time_of_day is not None:
        start, end, moment = gates.time_of_day.start, gates.time_of_day.end, local.time()
        inside = start <= moment < end if start <= end else moment >= start or moment < end
        if not inside:
            return False
    if gates.day_types is not None and calendar.day_type(local.date()) not in gates.day_types:
        return False
    return gates.open_hours is None or calendar.is_open(local) == gates.open_hours


def _context(event: Event, zone: str) -> dict[str, Any]:
    return {**event.data, "device_id": event.device_id, "zone": zone, "kind": event.kind}
