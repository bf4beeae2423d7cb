"""A ratings desk over a real journal, alert service, audit trail and hall calendar,
with time in the test's hands."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.alerts import AlertService
from hub.audit import AuditTrail
from hub.calendar import HallCalendar
from hub.clock import ManualClock
from hub.journal import Journal
from hub.ratings import RatingDesk, RatingInput, RatingsSection
from tests.alerts.kit import alert_service

HALL_ZONE = ZoneInfo("Asia/Shanghai")


def hall_time(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> float:
    """A hall-local moment as a Unix time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=HALL_ZONE).timestamp()


@dataclass
class Hall:
    """The parts a ratings test drives."""

    desk: RatingDesk
    clock: ManualClock
    journal: Journal
    alerts: AlertService
    audit: AuditTrail
    state_dir: Path


@asynccontextmanager
async def ratings_hall(
    state_dir: Path, settings: dict[str, Any] | None = None, wall: float | None = None
) -> AsyncIterator[Hall]:
    """A started desk whose journal is `state_dir/journal.sqlite3`, as a hub keeps it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    start = wall if wall is not None else hall_time(2026, 3, 2)
    async with alert_service(state_dir / "journal.sqlite3", wall=start) as parts:
        alerts, clock, _pages, journal = parts
        audit = AuditTrail(journal, clock)
        await audit.open()
        desk = RatingDesk(
            journal,
            clock,
            HallCalendar(),
            alerts,
            audit,
            RatingsSection.model_validate(settings or {}),
            state_dir,
        )
        await desk.start()
        yield Hall(desk, clock, journal, alerts, audit, state_dir)


def api_rating(clock: ManualClock, level: str, **fields: Any) -> RatingInput:
    """A rating as the API hands one in from the app channel."""
    base: dict[str, Any] = {"window": "W07", "channel": "app", "staff_id": "S1024"}
    base.update(fields)
    source = base.pop("source", f"app:{level}-{clock.wall()}-{sorted(fields.items())}")
    return RatingInput(level=level, source=source, rated_at=clock.wall(), **base)


def rows(journal: Journal, sql: str, *args: Any) -> list[dict[str, Any]]:
    with journal.reading() as conn:
        return [dict(row) for row in conn.execute(sql, args)]
