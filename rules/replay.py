"""Replay preview: what a candidate rule set would have done over journaled events.

The journal is read, never written: a read-only connection, and short reads (one
page of one lane at a time) bounded by the sequence numbers each lane had when the
replay began. That bound is the snapshot: events committed during the replay are
left out, ingest goes on undisturbed, and no read transaction stays open long
enough to keep SQLite from checkpointing, so the write-ahead log does not grow.

Both the current and the candidate rules run over the same events with the same
times, in a fresh engine each, and the report lists the firings only one of them
made. Within a lane events keep their sequence order; lanes are merged by receive
time, because the journal keeps no order across lanes. Durations are measured on
the events' receive times (the monotonic readings of the live run are not kept).
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.calendar import HallCalendar
from hub.events import LANE_ORDER, Event, Lane
from hub.journal import connect, row_to_event
from rules.actions import action_to_json
from rules.engine import Firing, RulesEngine, RuleTime
from rules.errors import ReplayError
from rules.spec import RuleSpec

logger = logging.getLogger(__name__)

PAGE = 5000


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What the candidate rules would do, and how that differs from the current rules."""

    events: int
    current: list[Firing]
    candidate: list[Firing]
    only_current: list[Firing]
    only_candidate: list[Firing]
    recorded: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "firings": {"current": len(self.current), "candidate": len(self.candidate)},
            "by_rule": {
                "recorded": self.recorded,
                "current": dict(Counter(f.rule_id for f in self.current)),
                "candidate": dict(Counter(f.rule_id for f in self.candidate)),
            },
            "only_current": [firing_to_json(f) for f in self.only_current],
            "only_candidate": [firing_to_json(f) for f in self.only_candidate],
        }


def firing_to_json(firing: Firing) -> dict[str, Any]:
    return {
        "rule_id": firing.rule_id,
        "key": firing.key,
        "phase": firing.phase,
        "trigger_ids": list(firing.trigger_ids),
        "actions": [action_to_json(action) for action in firing.actions],
    }


class JournalSnapshot:
    """The journal as it stood when this was made: each lane up to its last seq then."""

    def __init__(self, journal: Path, hub_id: str) -> None:
        if not journal.exists():
            raise ReplayError(f"no journal at {journal}")
        self.journal = journal
        self.hub_id = hub_id
        conn = connect(journal, writer=False)
        try:
            rows = conn.execute("SELECT lane, MAX(seq) FROM events GROUP BY lane").fetchall()
        finally:
            conn.close()
        self.bounds = {Lane(lane): int(last) for lane, last in rows}

    def events(self, start: float, end: float) -> Iterator[Event]:
        """Events received in [start, end), lanes merged by receive time, each in seq order."""
        conn = connect(self.journal, writer=False)
        try:
            lanes = [
                _lane_pages(conn, self.hub_id, lane, self.bounds[lane], start, end)
                for lane in LANE_ORDER
                if lane in self.bounds
            ]
            order = {lane: index for index, lane in enumerate(LANE_ORDER)}
            yield from heapq.merge(
                *lanes, key=lambda event: (event.received_at, order[event.lane], event.seq)
            )
        finally:
            conn.close()


def _lane_pages(
    conn: sqlite3.Connection, hub_id: str, lane: Lane, last: int, start: float, end: float
) -> Iterator[Event]:
    after = 0
    while after < last:
        rows = conn.execute(
            "SELECT * FROM events WHERE lane = ? AND seq > ? AND seq <= ?"
            " AND received_at >= ? AND received_at < ? ORDER BY seq LIMIT ?",
            (lane.value, after, last, start, end, PAGE),
        ).fetchall()  # fetched whole, so the read transaction ends here
        if not rows:
            return
        for row in rows:
            yield row_to_event(row, hub_id)
        after = rows[-1]["seq"]


def run_rules(
    events: Iterator[Event],
    rule_sets: list[list[RuleSpec]],
    calendar: HallCalendar,
    zones: dict[str, str],
    end: float,
) -> tuple[int, list[list[Firing]]]:
    """Every firing each rule set makes over `events` (read once, fed to all in step).

    Times are the events' receive times, both for durations and for the calendar.
    """
    engines = [RulesEngine(rules, calendar) for rules in rule_sets]
    firings: list[list[Firing]] = [[] for _ in engines]
    count = 0
    for event in events:
        count += 1
        now = RuleTime(event.received_at, event.received_at, event.clock_synchronised)
        zone = zones.get(event.device_id, "")
        for engine, found in zip(engines, firings, strict=True):
            found.extend(engine.evaluate(event, zone, now))
    for engine, found in zip(engines, firings, strict=True):
        found.extend(engine.tick(RuleTime(end, end, True)))
    return count, firings


def replay_preview(
    journal: Path,
    hub_id: str,
    start: float,
    end: float,
    current: list[RuleSpec],
    candidate: list[RuleSpec],
    calendar: HallCalendar,
    zones: dict[str, str],
) -> ReplayReport:
    """Run both rule sets over the journal snapshot of [start, end) and compare."""
    if end <= start:
        raise ReplayError("--to must be after --from")
    events = JournalSnapshot(journal, hub_id).events(start, end)
    count, (now_firings, new_firings) = run_rules(
        events, [current, candidate], calendar, zones, end
    )
    only_current, only_candidate = _difference(now_firings, new_firings)
    logger.info("replayed %d events: %d firings now, %d with the candidate rules",
                count, len(now_firings), len(new_firings))  # fmt: skip
    recorded = _recorded_firings(journal, start, end)
    return ReplayReport(count, now_firings, new_firings, only_current, only_candidate, recorded)


def _recorded_firings(journal: Path, start: float, end: float) -> dict[str, int]:
    """Firings the live hub journaled in the range, per rule (what the rules really did)."""
    conn = connect(journal, writer=False)
    try:
        rows = conn.execute(
            "SELECT rule_id, COUNT(*) FROM rule_firings WHERE fired_at >= ? AND fired_at < ?"
            " GROUP BY rule_id ORDER BY rule_id",
            (start, end),
        ).fetchall()
    except sqlite3.OperationalError:
        return {}  # a journal from before rules kept firings
    finally:
        conn.close()
    return {rule_id: int(count) for rule_id, count in rows}


def _difference(left: list[Firing], right: list[Firing]) -> tuple[list[Firing], list[Firing]]:
    def keyed(firings: list[Firing]) -> Counter[str]:
        return Counter(json.dumps(firing_to_json(f), sort_keys=True, default=str) for f in firings)

    left_keys, right_keys = keyed(left), keyed(right)
    only_left, only_right = left_keys - right_keys, right_keys - left_keys
    return _pick(left, only_left), _pick(right, only_right)


def _pick(firings: list[Firing], wanted: Counter[str]) -> list[Firing]:
    picked = []
    remaining = Counter(wanted)
    for firing in firings:
        key = json.dumps(firing_to_json(firing), sort_keys=True, default=str)
        if remaining[key] > 0:
            remaining[key] -= 1
            picked.append(firing)
    return picked


def parse_moment(text: str, calendar: HallCalendar, *, end_of_day: bool) -> float:
    """A hall-local date (whole day) or date and time, as a Unix time."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReplayError(f"{text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from exc
    if end_of_day and len(text) == len("YYYY-MM-DD"):
        moment += dt.timedelta(days=1)
    return calendar.local(moment).timestamp()


def preview_for_config(
    config_path: Path, start_text: str, end_text: str, candidate_dir: Path
) -> ReplayReport:
    """`hallhub rules replay`: the hall's current layers against `candidate_dir` as hall layer."""
    from hub.calendar import load_calendar_settings
    from hub.config import load_config
    from rules.layers import hall_layers, load_layers

    config = load_config(config_path)
    settings = load_calendar_settings(config.calendar_file) if config.calendar_file else None
    calendar = HallCalendar(settings)
    state_dir = config.hub.state_dir
    current = load_layers(hall_layers(state_dir, config.rule_files)).rules
    candidate = load_layers(hall_layers(state_dir, [candidate_dir])).rules
    zones = {device.id: device.zone for device in config.devices}
    return replay_preview(
        state_dir / "journal.sqlite3",
        config.hub.id,
        parse_moment(start_text, calendar, end_of_day=False),
        parse_moment(end_text, calendar, end_of_day=True),
        current,
        candidate,
        calendar,
        zones,
    )
