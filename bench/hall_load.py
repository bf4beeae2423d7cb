"""A busy hall's events and a large rule set, generated, for the rule benchmarks."""

from __future__ import annotations

import random
from typing import Any

from hub.events import Event, Lane
from rules.layers import load_layers, shipped_pack
from rules.spec import RuleSpec

KINDS = {
    "occupancy_sensor": ("count", Lane.TELEMETRY),
    "rating_pad": ("rating", Lane.RATING),
    "ticket_printer": ("ticket", Lane.TICKET),
    "toilet_alarm": ("heartbeat", Lane.HEALTH),
}
LEVELS = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"]
ZONES = [f"{floor}F zone {n}" for floor in (1, 2, 3) for n in range(1, 6)]


def many_rules(total: int) -> list[RuleSpec]:
    """The shipped pack plus generated rules (thresholds, counts, matches) up to `total`."""
    rules = list(load_layers([("pack", shipped_pack())]).rules)
    rng = random.Random(7)
    number = 0
    while len(rules) < total:
        number += 1
        zone = rng.choice(ZONES)
        shape = number % 3
        document: dict[str, Any]
        if shape == 0:
            document = {
                "when": {"kind": "occupancy_sensor", "type": "count", "zone": zone},
                "if": {"threshold": {"field": "occupancy", "above": rng.randint(20, 60)},
                       "held_for": 300},
                "otherwise": [{"clear": {"condition": f"c{number}"}}],
            }  # fmt: skip
        elif shape == 1:
            document = {
                "when": {"kind": "rating_pad", "type": "rating",
                         "fields": {"level": rng.choice(LEVELS), "window": f"W{number % 30:02d}"}},
            }  # fmt: skip
        else:
            document = {
                "when": {"kind": "ticket_printer", "type": "ticket", "zone": zone},
                "if": {"count": {"at_least": 50, "within": 60}},
            }
        raise_ = {"condition": f"c{number}", "severity": "normal", "team": "crew"}
        document |= {"id": f"generated-{number}", "then": [{"raise": raise_}]}
        rules.append(RuleSpec.model_validate(document))
    return rules


def busy_hall_events(count: int, start: float, seconds: float) -> list[Event]:
    """`count` events spread over `seconds` from 150 devices of four kinds."""
    rng = random.Random(11)
    devices = [(f"dev-{n:03d}", list(KINDS)[n % len(KINDS)]) for n in range(150)]
    seqs = dict.fromkeys(Lane, 0)
    events = []
    for index in range(count):
        device_id, kind = devices[rng.randrange(len(devices))]
        type_, lane = KINDS[kind]
        seqs[lane] += 1
        data: dict[str, Any] = {}
        if kind == "occupancy_sensor":
            data = {"occupancy": rng.randint(0, 80)}
        elif kind == "rating_pad":
            data = {"level": rng.choice(LEVELS), "window": f"W{rng.randrange(30):02d}"}
        elif kind == "ticket_printer":
            data = {"ticket": f"A{index % 1000:03d}", "category": "A"}
        events.append(
            Event("bench", 1, lane, seqs[lane], f"e{index}", device_id, kind, type_, data,
                  received_at=start + seconds * index / count, clock_synchronised=True)
        )  # fmt: skip
    return events


def zones_of(events: list[Event]) -> dict[str, str]:
    devices = sorted({event.device_id for event in events})
    return {device: ZONES[n % len(ZONES)] for n, device in enumerate(devices)}
