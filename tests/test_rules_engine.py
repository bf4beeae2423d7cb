"""The rules engine alone: triggers, conditions, timers, schedules, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ConfigError
from rules.actions import ClearCondition, CommandDevice, EmitEvent, RaiseCondition, SetZoneState
from rules.cron import CronSchedule
from rules.engine import Firing, RulesEngine
from rules.errors import ScheduleError
from tests.rulekit import Moment, engine_from, event

CROWDING = """
rules:
  - id: crowding
    per: zone
    when: {kind: occupancy_sensor, type: count, zone: "*waiting*"}
    if:
      threshold: {field: occupancy, above: 40, clear_below: 30}
      held_for: 600
    then:
      - raise: {condition: crowding, severity: high, team: floor, message: "{zone} {occupancy}"}
      - set_zone_state: {state: crowded, value: true}
    otherwise:
      - clear: {condition: crowding}
"""


def actions(firings: list[Firing]) -> list[object]:
    return [action for firing in firings for action in firing.actions]


def test_event_trigger_matches_kind_type_zone_and_field_predicates(tmp_path: Path) -> None:
    """Only a rating pad's rating with a bad level, in a matching zone, fires."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: bad
            when:
              kind: rating_pad
              type: rating
              zone: "f1-*"
              fields: {level: {in: [不满意, 非常不满意]}, window: W1}
            then:
              - raise: {condition: bad, severity: normal, team: sup, message: "{level}@{window}"}
        """,
    )
    clock = Moment("2026-03-02 10:00")
    good = event("pad-1", "rating_pad", "rating", level="满意", window="W1")
    other_zone = event("pad-2", "rating_pad", "rating", level="不满意", window="W1")
    bad = event("pad-1", "rating_pad", "rating", level="不满意", window="W1")
    assert engine.evaluate(good, "f1-windows", clock.now()) == []
    assert engine.evaluate(other_zone, "f2-windows", clock.now()) == []
    fired = engine.evaluate(bad, "f1-windows", clock.now())
    assert [f.trigger_ids for f in fired] == [(bad.event_id,)]
    raised = fired[0].actions[0]
    assert isinstance(raised, RaiseCondition) and raised.message == "不满意@W1"


def test_retained_events_never_fire(tmp_path: Path) -> None:
    """A call replayed from retained state raises nothing; a fresh one does."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: call
            when: {kind: toilet_alarm, type: call}
            then: [{raise: {condition: call, severity: urgent, team: desk}}]
        """,
    )
    clock = Moment("2026-03-02 10:00")
    replayed = event("alarm-1", "toilet_alarm", "call", retained=True)
    assert engine.evaluate(replayed, "wc", clock.now()) == []
    assert len(engine.evaluate(event("alarm-1", "toilet_alarm", "call"), "wc", clock.now())) == 1


def test_state_change_trigger_fires_only_when_the_field_changes(tmp_path: Path) -> None:
    """paper: out fires once on the change, not on every status repeating it."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: out
            when: {kind: ticket_printer, type: status, changes: paper, fields: {paper: out}}
            then: [{raise: {condition: paper_out, severity: high, team: crew}}]
        """,
    )
    clock = Moment("2026-03-02 10:00")
    seen = [
        len(engine.evaluate(event("p1", "ticket_printer", "status", paper=p), "", clock.now()))
        for p in ("ok", "out", "out", "ok", "out")
    ]
    assert seen == [0, 1, 0, 0, 1]


def test_threshold_with_hysteresis_held_for_ten_minutes(tmp_path: Path) -> None:
    """41 people for 10 minutes raises; dipping to 35 keeps it; below 30 clears it."""
    engine = engine_from(tmp_path, CROWDING)
    clock = Moment("2026-03-02 10:00")

    def count(n: int) -> list[Firing]:
        return engine.evaluate(
            event("occ-1", "occupancy_sensor", "count", occupancy=n), "f1-waiting", clock.now()
        )

    assert count(41) == []
    clock.advance(599)
    assert engine.tick(clock.now()) == []
    clock.advance(1)
    raised = actions(engine.tick(clock.now()))
    assert isinstance(raised[0], RaiseCondition) and raised[0].message == "f1-waiting 41"
    assert isinstance(raised[1], SetZoneState) and raised[1].zone == "f1-waiting"
    assert count(35) == []  # between the levels: still crowded
    cleared = actions(count(29))
    assert [type(a) for a in cleared] == [ClearCondition]


def test_a_dip_before_the_held_time_restarts_the_timer(tmp_path: Path) -> None:
    """Crowded 9 minutes, a dip below the clear level, crowded again: 10 more minutes."""
    engine = engine_from(tmp_path, CROWDING)
    clock = Moment("2026-03-02 10:00")
    sensor = "occupancy_sensor"
    engine.evaluate(event("occ", sensor, "count", occupancy=50), "waiting", clock.now())
    clock.advance(540)
    engine.evaluate(event("occ", sensor, "count", occupancy=10), "waiting", clock.now())
    engine.evaluate(event("occ", sensor, "count", occupancy=50), "waiting", clock.now())
    assert engine.tick(clock.advance(300)) == []
    assert len(engine.tick(clock.advance(300))) == 1


def test_wall_clock_jumps_neither_fire_nor_strand_a_timer(tmp_path: Path) -> None:
    """An NTP step of +2 h, then −3 h, leaves a 10-minute hold firing after 10 minutes."""
    engine = engine_from(tmp_path, CROWDING)
    clock = Moment("2026-03-02 10:00")
    engine.evaluate(event("occ", "occupancy_sensor", "count", occupancy=50), "waiting", clock.now())
    assert engine.tick(clock.jump_wall(7200)) == []
    assert engine.tick(clock.advance(300)) == []
    assert engine.tick(clock.jump_wall(-10800)) == []
    assert len(engine.tick(clock.advance(300))) == 1


def test_count_within_a_window(tmp_path: Path) -> None:
    """Five ratings in two minutes fire once; five spread over ten minutes never do."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: burst
            when: {kind: rating_pad, type: rating}
            if: {count: {at_least: 5, within: 120}}
            then: [{raise: {condition: burst, severity: normal, team: sup, message: "{count}"}}]
        """,
    )
    clock = Moment("2026-03-02 10:00")
    fired = []
    for _ in range(5):
        fired += engine.evaluate(
            event("pad", "rating_pad", "rating", window="W1"), "", clock.advance(20)
        )
    assert len(fired) == 1 and fired[0].actions[0].message == "5"  # type: ignore[union-attr]
    slow = []
    for _ in range(5):
        slow += engine.evaluate(
            event("pad", "rating_pad", "rating", window="W1"), "", clock.advance(121)
        )
    assert slow == []


def test_absent_condition_sees_events_at_the_same_window(tmp_path: Path) -> None:
    """A burst with a ticket served at that window recently does not fire; at another, it does."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: burst
            when: {kind: rating_pad, type: rating}
            if:
              count: {at_least: 2, within: 60}
              absent: {type: served, same: window, within: 600}
            then: [{raise: {condition: integrity, severity: normal, team: sup}}]
        """,
    )
    clock = Moment("2026-03-02 10:00")
    engine.evaluate(event("q", "queue", "served", window="W1"), "", clock.now())
    burst = [event("pad", "rating_pad", "rating", window=w) for w in ("W1", "W1", "W2", "W2")]
    fired = [len(engine.evaluate(e, "", clock.advance(5))) for e in burst]
    assert fired == [0, 0, 0, 1]


def test_time_of_day_day_type_and_open_hours_gates(tmp_path: Path) -> None:
    """A rule for open hours fires on a working-day morning, not on a Sunday or at night."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: gated
            when: {type: ping}
            if: {open_hours: true, day_types: [working_day, makeup_workday],
                 time_of_day: {start: "09:30", end: "16:00"}}
            then: [{emit: {type: pinged}}]
        """,
    )
    for wall, expected in (
        ("2026-03-02 10:00", 1),  # Monday
        ("2026-03-01 10:00", 0),  # Sunday
        ("2026-02-28 10:00", 1),  # make-up Saturday
        ("2026-03-02 09:15", 0),  # open, but before 09:30
        ("2026-03-02 20:00", 0),
    ):
        fired = engine.evaluate(event("x", "k", "ping"), "", Moment(wall).now())
        assert len(fired) == expected, wall
    emitted = engine.evaluate(event("x", "k", "ping"), "", Moment("2026-03-02 10:00").now())
    assert isinstance(emitted[0].actions[0], EmitEvent)


def test_until_ends_a_state_and_open_hours_wait(tmp_path: Path) -> None:
    """Offline after hours pages nobody; still offline at opening it pages, online clears."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: offline
            when: {type: offline}
            until: {type: online}
            if: {held_for: 300, open_hours: true}
            then: [{raise: {condition: offline, severity: normal, team: crew}}]
            otherwise: [{clear: {condition: offline}}]
        """,
    )
    clock = Moment("2026-03-02 18:00")
    engine.evaluate(event("p1", "ticket_printer", "offline"), "", clock.now())
    engine.evaluate(event("p2", "ticket_printer", "offline"), "", clock.now())
    assert engine.tick(clock.advance(3600)) == []
    assert engine.evaluate(event("p2", "ticket_printer", "online"), "", clock.advance(600)) == []
    fired = engine.tick(clock.advance(14 * 3600 + 60))  # next morning, 09:11
    assert [f.key for f in fired] == ["p1"]
    cleared = engine.evaluate(event("p1", "ticket_printer", "online"), "", clock.advance(60))
    assert isinstance(cleared[0].actions[0], ClearCondition)


def test_schedule_fires_in_the_hall_time_zone_and_replans_after_a_jump(tmp_path: Path) -> None:
    """A 09:00 schedule fires at 09:00 Shanghai; a forward jump past it re-plans, no firing."""
    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: morning
            when: {schedule: "0 9 * * 1-5"}
            then: [{command: {device: printer-1, command: wake}}]
        """,
    )
    clock = Moment("2026-03-02 08:58")
    assert engine.tick(clock.now()) == []  # plans 09:00
    assert engine.tick(clock.advance(60)) == []
    fired = engine.tick(clock.advance(61))
    assert isinstance(fired[0].actions[0], CommandDevice)
    clock.advance(60)
    engine.tick(clock.now())
    # Tuesday 08:58 by a wall-clock step: re-planned, and it does not fire on the step.
    assert engine.tick(clock.jump_wall(24 * 3600 - 180)) == []
    assert engine.tick(clock.advance(90)) == []  # 08:59:31
    assert len(engine.tick(clock.advance(60))) == 1  # 09:00:31


def test_unsynchronised_clock_holds_schedules(tmp_path: Path) -> None:
    """A schedule does not act on a wall clock nobody has synchronised."""
    from rules.engine import RuleTime

    engine = engine_from(
        tmp_path,
        """
        rules:
          - id: tick
            when: {schedule: "* * * * *"}
            then: [{emit: {type: minute}}]
        """,
    )
    clock = Moment("2026-03-02 10:00")
    engine.tick(RuleTime(clock.monotonic, clock.wall, synchronised=False))
    clock.advance(61)
    assert engine.tick(RuleTime(clock.monotonic, clock.wall, synchronised=False)) == []
    clock.advance(60)
    assert len(engine.tick(clock.now())) == 1


def test_same_events_give_same_firings(tmp_path: Path) -> None:
    """Two engines fed the same events at the same times decide exactly the same."""
    stream = [event("occ", "occupancy_sensor", "count", occupancy=n) for n in (10, 45, 50, 20, 60)]

    def run() -> list[tuple[object, ...]]:
        engine = engine_from(tmp_path, CROWDING)
        clock = Moment("2026-03-02 10:00")
        out = []
        for e in stream:
            out += engine.evaluate(e, "waiting", clock.advance(400))
        out += engine.tick(clock.advance(900))
        return [f.signature() for f in out]

    first = run()
    assert first and first == run()


def test_restored_state_resumes_a_running_timer(tmp_path: Path) -> None:
    """States handed from one engine to a fresh one keep the timer's deadline."""
    first = engine_from(tmp_path, CROWDING)
    clock = Moment("2026-03-02 10:00")
    first.evaluate(event("occ", "occupancy_sensor", "count", occupancy=50), "waiting", clock.now())
    saved = first.take_dirty()
    second = engine_from(tmp_path, CROWDING)
    second.restore(saved)
    assert second.tick(clock.advance(599)) == []
    assert len(second.tick(clock.advance(1))) == 1


def test_cron_parsing() -> None:
    """Ranges, lists, steps and Sunday as 0 or 7; nonsense is refused with a reason."""
    schedule = CronSchedule.parse("*/15 9-11,14 * * 1-5")
    assert schedule.minutes == frozenset({0, 15, 30, 45})
    assert schedule.hours == frozenset({9, 10, 11, 14})
    assert CronSchedule.parse("0 0 * * 7").weekdays == frozenset({0})
    with pytest.raises(ScheduleError, match="five fields"):
        CronSchedule.parse("0 9 * *")
    with pytest.raises(ScheduleError, match="0 to 59"):
        CronSchedule.parse("61 9 * * *")


def test_invalid_rules_are_refused_with_file_and_line(tmp_path: Path) -> None:
    """A bad schedule and an action doing two things are named by line."""
    with pytest.raises(ConfigError, match=r"rules-\d+\.yaml: line 4: .*schedule"):
        engine_from(
            tmp_path,
            """
            rules:
              - id: broken
                when: {schedule: "0 25 * * *"}
                then: [{emit: {type: x}}]
            """,
        )
    with pytest.raises(ConfigError, match=r"line 6: rules\.0\.then\.0"):
        engine_from(
            tmp_path,
            """
            rules:
              - id: two
                when: {type: x}
                then:
                  - {emit: {type: y}, clear: {condition: z}}
            """,
        )


def test_duplicate_rule_ids_are_refused() -> None:
    """Two rules with one id in one engine are refused."""
    from rules.layers import load_layers, shipped_pack

    rules = load_layers([("pack", shipped_pack())]).rules
    with pytest.raises(ConfigError, match="toilet-call"):
        RulesEngine(rules + rules[:1])


def shipped_engine() -> RulesEngine:
    from rules.layers import load_layers, shipped_pack

    return RulesEngine(load_layers([("pack", shipped_pack())]).rules)


def test_pack_printer_jam_raises_and_clears() -> None:
    """A printer reporting a jam raises printer_jam for the crew; jam_cleared clears it.

    No shipped printer model sends jams yet, so this is proved on the engine alone.
    """
    engine = shipped_engine()
    clock = Moment("2026-03-02 10:00")
    raised = actions(engine.evaluate(event("p1", "ticket_printer", "jam"), "1F", clock.now()))
    cleared = actions(
        engine.evaluate(event("p1", "ticket_printer", "jam_cleared"), "1F", clock.advance(60))
    )
    assert [(type(a).__name__, a.condition) for a in raised + cleared] == [  # type: ignore[union-attr]
        ("RaiseCondition", "printer_jam"),
        ("ClearCondition", "printer_jam"),
    ]


def test_pack_welfare_check_restarts_on_movement() -> None:
    """A report with motion ends the 30-minute hold; the next still report starts it again."""
    engine = shipped_engine()
    clock = Moment("2026-03-02 10:00")
    zone = "1F accessible toilet"
    engine.evaluate(event("wc", "occupancy_sensor", "count", occupancy=1), zone, clock.now())
    clock.advance(20 * 60)
    engine.evaluate(
        event("wc", "occupancy_sensor", "count", occupancy=1, motion=True), zone, clock.now()
    )
    engine.evaluate(event("wc", "occupancy_sensor", "count", occupancy=1), zone, clock.now())
    assert engine.tick(clock.advance(20 * 60)) == []
    fired = engine.tick(clock.advance(10 * 60))
    assert [f.rule_id for f in fired] == ["accessible-toilet-occupied"]
