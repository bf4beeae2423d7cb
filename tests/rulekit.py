"""Helpers for rule tests: rules from YAML text, events, and moments on a hall clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import textwrap
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.clock import ManualClock
from hub.events import Event, Lane
from rules.engine import RulesEngine, RuleTime
from rules.layers import load_layers

SHANGHAI = ZoneInfo("Asia/Shanghai")
_SEQ = itertools.count(1)


def wall_at(text: str) -> float:
    """Unix time of a hall-local 'YYYY-MM-DD HH:MM'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def engine_from(tmp_path: Path, text: str) -> RulesEngine:
    path = tmp_path / f"rules-{next(_SEQ)}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return RulesEngine(load_layers([("hall", path)]).rules)


def event(device_id: str, kind: str, type_: str, retained: bool = False, **data: Any) -> Event:
    seq = next(_SEQ)
    return Event(
        hub_id="hall-test",
        epoch=1,
        lane=Lane.TELEMETRY,
        seq=seq,
        event_id=f"ev-{seq}",
        device_id=device_id,
        kind=kind,
        type=type_,
        data=data,
        retained=retained,
    )


class Moment:
    """A monotonic and a wall clock that tests move by hand."""

    def __init__(self, wall: str) -> None:
        self.monotonic = 1000.0
        self.wall = wall_at(wall)

    def now(self) -> RuleTime:
        return RuleTime(self.monotonic, self.wall)

    def advance(self, seconds: float) -> RuleTime:
        self.monotonic += seconds
        self.wall += seconds
        return self.now()

    def jump_wall(self, seconds: float) -> RuleTime:
        self.wall += seconds
        return self.now()


async def advance(clock: ManualClock, seconds: float, step: float = 5.0) -> None:
    """Move a hub's ManualClock in steps, letting its tasks finish their writes between.

    `ManualClock.advance` wakes a sleeper only if it is asleep; a rule tick still
    writing to the journal would miss the rest of a long advance.
    """
    remaining = seconds
    while remaining > 0:
        moved = min(step, remaining)
        await clock.advance(moved)
        await asyncio.sleep(0.01)
        remaining -= moved
