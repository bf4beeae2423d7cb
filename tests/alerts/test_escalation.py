"""Escalation ladders and closed hours, driven by a manual clock (no sleeping)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hub.alerts import AlertService, AlertsSection
from hub.clock import ManualClock
from hub.journal import Journal
from tests.alerts.kit import MONDAY_10AM, Pages, alert_service, rows

HOUR = 3600.0


async def test_urgent_alert_climbs_the_default_ladder_until_acknowledged(tmp_path: Path) -> None:
    """Urgent: duty desk at once, crew lead at 60 s, supervisor at 180 s; an ack stops it."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, clock, pages, _journal):
        call = await alerts.raise_condition(
            "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
        )
        await clock.advance(59)
        await alerts.tick()
        before_a_minute = list(pages.events())
        await clock.advance(1)
        await alerts.tick()
        after_a_minute = list(pages.events())
        await clock.advance(120)
        await alerts.tick()
        await alerts.acknowledge(call["alert_id"], "desk")
        await clock.advance(HOUR)
        await alerts.tick()

    assert before_a_minute == [("duty_desk", "opened")]
    assert after_a_minute[-1] == ("crew_lead", "escalated")
    assert pages.events() == [
        ("duty_desk", "opened"),
        ("crew_lead", "escalated"),
        ("supervisor", "escalated"),
        ("duty_desk", "acknowledged"),
        ("crew_lead", "acknowledged"),
        ("supervisor", "acknowledged"),
    ]


async def test_team_ladder_overrides_the_severity_ladder(tmp_path: Path) -> None:
    """A team's own ladder replaces the default for that team only."""
    settings = {"team_ladders": {"maint": {"high": [{"after": 30, "notify": "maint_lead"}]}}}
    async with alert_service(tmp_path / "j.sqlite3", settings) as (alerts, clock, pages, _j):
        await alerts.raise_condition("printer-1", "jam", "high", "maint", "jam", None)
        await alerts.raise_condition("kiosk-1", "offline", "high", "it", "off", None)
        await clock.advance(30)
        await alerts.tick()

    assert pages.events() == [("maint", "opened"), ("it", "opened"), ("maint_lead", "escalated")]


async def test_escalation_survives_a_hub_restart(tmp_path: Path) -> None:
    """Deadlines live in SQLite: a hub restarted mid-ladder escalates on time."""
    path = tmp_path / "j.sqlite3"
    async with alert_service(path) as (alerts, clock, _pages, _journal):
        await alerts.raise_condition("alarm-1", "toilet_call", "urgent", "duty_desk", "c", None)
        await clock.advance(40)
        await alerts.tick()
    async with alert_service(path, wall=MONDAY_10AM + 50) as (alerts, clock, pages, journal):
        await alerts.tick()
        early = list(pages.events())
        await clock.advance(10)
        await alerts.tick()
        stored = rows(journal, "SELECT escalation_step, escalate_at, notified_at FROM alerts")

    assert early == []
    assert pages.events() == [("crew_lead", "escalated")]
    assert stored[0]["escalation_step"] == 1
    assert stored[0]["escalate_at"] == stored[0]["notified_at"] + 180


async def test_closed_hours_page_urgent_only_and_the_rest_at_opening(tmp_path: Path) -> None:
    """At night an urgent call pages at once; a paper-out waits for opening time."""
    settings = {"closed_hours": {"opens": "08:30", "closes": "17:30", "weekdays": [0, 1, 2]}}
    night = MONDAY_10AM + 13 * HOUR  # Monday 23:00 in Shanghai
    async with alert_service(tmp_path / "j.sqlite3", settings, wall=night) as (
        alerts,
        clock,
        pages,
        journal,
    ):
        await alerts.raise_condition("alarm-1", "toilet_call", "urgent", "duty_desk", "c", None)
        paper = await alerts.raise_condition("printer-1", "paper_out", "high", "maint", "p", None)
        await alerts.acknowledge(1, "desk")
        await clock.advance(9 * HOUR)  # Tuesday 08:00: still closed
        await alerts.tick()
        before_opening = list(pages.events())
        await clock.advance(HOUR)  # Tuesday 09:00
        await alerts.tick()
        stored = rows(journal, "SELECT hold_reason FROM alerts WHERE alert_id = 2")

    assert paper["hold_reason"] == "closed hours"
    assert before_opening == [("duty_desk", "opened"), ("duty_desk", "acknowledged")]
    assert pages.events()[-1] == ("maint", "opened")
    assert stored == [{"hold_reason": None}]


async def test_the_tick_loop_escalates_as_the_clock_advances(tmp_path: Path) -> None:
    """The service's own loop, on the injected clock, escalates without a manual tick."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, clock, pages, _journal):
        loop = asyncio.create_task(alerts.run(), name="alerts-tick")
        await alerts.raise_condition("alarm-1", "toilet_call", "urgent", "duty_desk", "c", None)
        await clock.advance(60)
        for _ in range(500):  # the loop does journal I/O between sleeps; nudge until it ticks
            if ("crew_lead", "escalated") in pages.events():
                break
            await clock.advance(0.1)
            await asyncio.sleep(0.01)
        escalated = ("crew_lead", "escalated") in pages.events()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    assert escalated


class _HolidayCalendar:
    """A hall calendar stand-in: the whole day is a public holiday (closed)."""

    def is_open(self, wall: float) -> bool:
        return False


async def pages_on_a_holiday(tmp_path: Path, settings: AlertsSection) -> list[tuple[str, str]]:
    """The pages a printer jam and a toilet call get on a holiday, Monday 10:00."""
    journal = Journal(tmp_path / "j.sqlite3", "hall-test")
    journal.open()
    pages = Pages()
    clock = ManualClock(MONDAY_10AM)
    alerts = AlertService(journal, clock, pages, settings, hours=_HolidayCalendar())
    try:
        await alerts.start()
        await alerts.raise_condition("printer-1", "jam", "high", "maint", "jam", None)
        await alerts.raise_condition("alarm-1", "toilet_call", "urgent", "duty_desk", "c", None)
    finally:
        journal.close()
    return pages.events()


async def test_a_calendar_plugs_in_as_the_opening_hours(tmp_path: Path) -> None:
    """Any object with is_open() decides closed hours: on a holiday, only urgent pages."""
    settings = AlertsSection.model_validate({"closed_hours": {}})

    assert await pages_on_a_holiday(tmp_path, settings) == [("duty_desk", "opened")]


async def test_without_closed_hours_a_closed_calendar_holds_no_page(tmp_path: Path) -> None:
    """Holds need `closed_hours:`; a hall calendar alone only says when the hall is open."""
    settings = AlertsSection.model_validate({})

    assert await pages_on_a_holiday(tmp_path, settings) == [
        ("maint", "opened"),
        ("duty_desk", "opened"),
    ]
