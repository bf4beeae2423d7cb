"""The alert lifecycle over a real journal: states, dedupe, latching, flapping, silences."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.alerts import AlertLatchedError, AlertNotFoundError
from hub.alerts.silences import add_silence
from tests.alerts.kit import alert_service, rows


async def test_open_acknowledge_resolve_records_who_and_when(tmp_path: Path) -> None:
    """An alert goes open → acknowledged → resolved, keeping who acted and when."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, clock, pages, _journal):
        alert = await alerts.raise_condition(
            "printer-1", "paper_out", "high", "maintenance", "Printer out of paper", "ev-1"
        )
        await clock.advance(30)
        acked = await alerts.acknowledge(alert["alert_id"], "li.wei")
        await clock.advance(30)
        done = await alerts.resolve(alert["alert_id"], "li.wei")

    assert alert["state"] == "open" and alert["severity"] == "high"
    assert alert["team"] == "maintenance" and alert["kind"] == "printer"
    assert acked["acknowledged_by"] == "li.wei"
    assert acked["acknowledged_at"] == alert["opened_at"] + 30
    assert done["state"] == "resolved" and done["resolved_by"] == "li.wei"
    assert done["resolved_at"] == alert["opened_at"] + 60
    assert pages.events() == [
        ("maintenance", "opened"),
        ("maintenance", "acknowledged"),
        ("maintenance", "resolved"),
    ]


async def test_repeats_count_on_one_alert_and_clearing_resolves_it(tmp_path: Path) -> None:
    """The same device and condition make one alert with a counter; a clear resolves it."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, _clock, pages, journal):
        for _ in range(5):
            await alerts.raise_condition("printer-1", "paper_out", "high", "maint", "out", None)
        await alerts.clear_condition("printer-1", "paper_out")
        stored = rows(journal, "SELECT state, count, resolved_by FROM alerts")

    assert stored == [{"state": "resolved", "count": 5, "resolved_by": "condition cleared"}]
    assert pages.events() == [("maint", "opened"), ("maint", "resolved")]


async def test_latched_toilet_call_is_not_resolved_by_hand(tmp_path: Path) -> None:
    """A toilet call resolves only when reset at the alarm, never from a screen."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, _clock, _pages, _journal):
        call = await alerts.raise_condition(
            "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
        )
        await alerts.acknowledge(call["alert_id"], "desk")
        with pytest.raises(AlertLatchedError, match="reset at the device"):
            await alerts.resolve(call["alert_id"], "desk")
        reset = await alerts.clear_condition("alarm-1", "toilet_call", "reset at the alarm")

    assert call["latched"] == 1
    assert reset is not None and reset["state"] == "resolved"
    assert reset["resolved_by"] == "reset at the alarm"


async def test_acknowledging_twice_or_an_unknown_alert_is_refused(tmp_path: Path) -> None:
    """Only an open alert can be acknowledged; the error names the alert."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, _clock, _pages, _journal):
        alert = await alerts.raise_condition("kiosk-1", "offline", "normal", "it", "off", None)
        await alerts.acknowledge(alert["alert_id"], "a")
        with pytest.raises(AlertNotFoundError, match=str(alert["alert_id"])):
            await alerts.acknowledge(alert["alert_id"], "b")
        with pytest.raises(AlertNotFoundError, match="999"):
            await alerts.resolve(999, "b")


async def test_flapping_device_is_suppressed_once_then_released_when_quiet(
    tmp_path: Path,
) -> None:
    """Too many changes in a window suppress the alert, announced once; quiet ends it."""
    settings = {"flapping": {"transitions": 4, "window": 60}}
    async with alert_service(tmp_path / "j.sqlite3", settings) as (alerts, clock, pages, journal):
        for _ in range(6):
            await alerts.raise_condition("kiosk-1", "offline", "normal", "it", "off", None)
            await clock.advance(2)
            await alerts.clear_condition("kiosk-1", "offline")
            await clock.advance(2)
        while_flapping = rows(
            journal, "SELECT state, hold_reason FROM alerts WHERE state != 'resolved'"
        )
        flapping_pages = list(pages.events())
        await alerts.raise_condition("kiosk-1", "offline", "normal", "it", "off", None)
        await clock.advance(61)
        await alerts.tick()
        after_quiet = rows(journal, "SELECT state FROM alerts WHERE state != 'resolved'")

    assert while_flapping == [{"state": "suppressed", "hold_reason": "flapping"}]
    assert flapping_pages.count(("it", "suppressed")) == 1
    assert flapping_pages == [
        ("it", "opened"),
        ("it", "resolved"),
        ("it", "opened"),
        ("it", "suppressed"),
    ]
    assert after_quiet == [{"state": "open"}]
    assert pages.events()[-1] == ("it", "opened")


async def test_silenced_zone_holds_pages_until_the_silence_expires(tmp_path: Path) -> None:
    """Inside a silence an alert is kept but not paged; if still open after it, it pages."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, clock, pages, journal):
        now = clock.wall()
        await journal.write(
            lambda conn: add_silence(conn, "zone", "f2-windows", 600, "servicing", "li", now)
        )
        held = await alerts.raise_condition("printer-1", "jam", "normal", "maint", "jam", None)
        other = await alerts.raise_condition("kiosk-1", "offline", "normal", "it", "off", None)
        await clock.advance(300)
        await alerts.tick()
        paged_during = list(pages.events())
        await clock.advance(301)
        await alerts.tick()

    assert held["hold_reason"] == "silence 1" and held["notified_at"] is None
    assert other["hold_reason"] is None
    assert paged_during == [("it", "opened")]
    assert pages.events()[-1] == ("maint", "opened")


async def test_alert_resolved_inside_its_silence_never_pages(tmp_path: Path) -> None:
    """A printer serviced and cleared during its silence leaves a record but no page."""
    async with alert_service(tmp_path / "j.sqlite3") as (alerts, clock, pages, journal):
        now = clock.wall()
        await journal.write(
            lambda conn: add_silence(conn, "device", "printer-1", 600, "servicing", "li", now)
        )
        await alerts.raise_condition("printer-1", "jam", "normal", "maint", "jam", None)
        await alerts.clear_condition("printer-1", "jam")
        await clock.advance(700)
        await alerts.tick()
        stored = rows(journal, "SELECT state FROM alerts")

    assert stored == [{"state": "resolved"}]
    assert pages.sent == []


async def test_urgent_calls_are_never_suppressed_however_often_they_repeat(
    tmp_path: Path,
) -> None:
    """A toilet call pressed again after every reset pages every time (a person, not a fault)."""
    settings = {"flapping": {"transitions": 3, "window": 60}}
    async with alert_service(tmp_path / "j.sqlite3", settings) as (alerts, clock, pages, journal):
        for _ in range(5):
            await alerts.raise_condition("alarm-1", "toilet_call", "urgent", "duty_desk", "c", None)
            await clock.advance(1)
            await alerts.clear_condition("alarm-1", "toilet_call")
            await clock.advance(1)
        suppressed = rows(journal, "SELECT * FROM alerts WHERE suppressed_at IS NOT NULL")

    assert suppressed == []
    assert pages.events().count(("duty_desk", "opened")) == 5
