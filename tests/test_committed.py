"""The order committed events reach the registry and the rules: alarms first."""

from __future__ import annotations

from hub.committed import CommittedBacklog
from hub.events import Event, Lane


def event(lane: Lane, seq: int) -> Event:
    kind = "toilet_alarm" if lane is Lane.ALARM else "people_counter"
    return Event("hall-test", 1, lane, seq, f"{lane.value}-{seq}", f"dev-{seq}", kind, "reading")


def drain(backlog: CommittedBacklog) -> list[tuple[str, int]]:
    """Take every event as the hub does; return (lane, seq) of those given to the rules."""
    taken = []
    while backlog:
        handled = backlog.pop()
        if backlog.rules_due(handled):
            backlog.mark_handled(handled)
            taken.append((handled.lane.value, handled.seq))
    return taken


def test_a_toilet_call_committed_behind_a_burst_of_readings_is_handled_first() -> None:
    """1,000 readings then one call, in one commit group: the call is taken first,
    and the readings follow in their own order."""
    backlog = CommittedBacklog({lane: 0 for lane in Lane})
    burst = [event(Lane.TELEMETRY, seq) for seq in range(1, 1001)]

    backlog.add([*burst, event(Lane.ALARM, 1)])
    taken = drain(backlog)

    assert taken[0] == ("alarm", 1)
    assert taken[1:] == [("telemetry", seq) for seq in range(1, 1001)]


def test_a_call_committed_while_readings_are_handled_goes_next() -> None:
    """A call that arrives mid-burst is handled before the readings still waiting."""
    backlog = CommittedBacklog({lane: 0 for lane in Lane})
    backlog.add(event(Lane.TELEMETRY, seq) for seq in range(1, 4))
    first = backlog.pop()
    backlog.mark_handled(first)

    backlog.add([event(Lane.ALARM, 7)])

    assert (first.seq, backlog.pop().lane) == (1, Lane.ALARM)


def test_events_the_rules_caught_up_with_are_taken_but_not_given_to_the_rules_again() -> None:
    """An event committed as the hub started, already applied by the rules' catch-up,
    still comes out (the registry must hear of it) but is not due for the rules."""
    backlog = CommittedBacklog({**{lane: 0 for lane in Lane}, Lane.ALARM: 5})

    backlog.add([event(Lane.ALARM, 5), event(Lane.ALARM, 6), event(Lane.HEALTH, 1)])
    first = backlog.pop()

    assert (first.seq, backlog.rules_due(first)) == (5, False)
    assert drain(backlog) == [("alarm", 6), ("health", 1)]
    assert backlog.handled[Lane.ALARM] == 6
