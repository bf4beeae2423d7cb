"""Numbering, windows, calling and priority of the ticket service, on a real journal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hub.config import load_config
from hub.errors import ConfigError
from hub.tickets import TicketRequest
from hub.tickets.errors import (
    AppointmentError,
    TicketStateError,
    UnknownCategoryError,
    WindowStateError,
)
from tests.tickets.kit import MONDAY_0900, ticket_desk

DAY = 24 * 3600.0


async def test_numbers_count_per_category_with_the_configured_prefix(tmp_path: Path) -> None:
    """Each category counts from 001 under its own letter; an unknown letter is refused."""
    async with ticket_desk(tmp_path) as desk:
        numbers = [await desk.take("A"), await desk.take("B"), await desk.take("A")]
        with pytest.raises(UnknownCategoryError):
            await desk.take("Z")

    assert numbers == ["A001", "B001", "A002"]


async def test_a_new_service_day_is_logged_once_whatever_is_refused_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused requests before the day's first ticket do not each announce the day."""
    async with ticket_desk(tmp_path) as desk:
        with caplog.at_level(logging.INFO, logger="hub.tickets.service"):
            for _ in range(3):
                with pytest.raises(UnknownCategoryError):
                    await desk.take("Z")
            assert await desk.take("A") == "A001"

    assert caplog.text.count("begins; ticket numbers restart") == 1


async def test_a_repeated_request_id_gets_the_same_ticket(tmp_path: Path) -> None:
    """A printer's retry (same request id) returns the first ticket, not a new number."""
    async with ticket_desk(tmp_path) as desk:
        first = await desk.service.issue("p1", TicketRequest("r-1", "A"))
        again = await desk.service.issue("p1", TicketRequest("r-1", "A"))
        other_printer = await desk.service.issue("p2", TicketRequest("r-1", "A"))
        issued = desk.events("ticket_issued")

    assert (first["ticket"], again["ticket"], again["repeat"]) == ("A001", "A001", True)
    assert other_printer["ticket"] == "A002"
    assert [event["ticket"] for event in issued] == ["A001", "A002"]


async def test_numbers_restart_on_the_next_day_only_with_a_synchronised_clock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Next day: unsynchronised, numbering carries on with a WARNING; synchronised, A001."""
    async with ticket_desk(tmp_path) as desk:
        assert await desk.take("A") == "A001"
        desk.clock.jump_wall(DAY)
        desk.clock.synchronised = False
        with caplog.at_level(logging.WARNING, logger="hub.tickets.service"):
            carried_on = await desk.take("A")
        desk.clock.synchronised = True
        restarted = await desk.take("A")
        yesterday = desk.rows("SELECT state FROM tickets WHERE label = 'A001' ORDER BY ticket_id")

    assert carried_on == "A002"
    assert "clock not synchronised" in caplog.text
    assert restarted == "A001"
    assert [row["state"] for row in yesterday] == ["expired", "waiting"]


async def test_windows_call_only_when_open_and_serve_their_categories(tmp_path: Path) -> None:
    """A closed window cannot call; an open one calls its categories in order, not others."""
    async with ticket_desk(tmp_path) as desk:
        await desk.take("C")
        await desk.take("A")
        await desk.take("B")
        with pytest.raises(WindowStateError):
            await desk.service.call_next("W01", "api")
        await desk.service.set_window_state("W01", "open", "api")
        calls = [await desk.service.call_next("W01", "api") for _ in range(3)]
        await desk.service.set_window_state("W01", "paused", "api")
        with pytest.raises(WindowStateError):
            await desk.service.call_next("W01", "api")
        view = desk.service.view()
        audit = [entry.action for entry in desk.audit.entries()]

    assert [c["ticket"] if c else None for c in calls] == ["A001", "B001", None]
    assert view["categories"][2] == {
        "category": "C",
        "name": "Police",
        "waiting": 1,
        "average_wait_s": 0.0,
    }
    assert view["windows"][0] == {
        "window": "W01",
        "state": "paused",
        "serving": None,
        "categories": ["A", "B"],
    }
    assert view["tickets_issued_today"] == 3
    assert set(view) == {"categories", "windows", "tickets_issued_today"}
    assert audit[:2] == ["queue.paused", "queue.call"] and "queue.open" in audit


async def test_green_channel_is_served_first_within_its_category(tmp_path: Path) -> None:
    """A green-channel ticket issued last is called before the ordinary ones."""
    async with ticket_desk(tmp_path) as desk:
        await desk.take("A")
        await desk.take("A")
        await desk.take("A", green_channel=True)
        await desk.service.set_window_state("W01", "open", "api")
        order = [(await desk.service.call_next("W01", "api") or {})["ticket"] for _ in range(3)]

    assert order == ["A003", "A001", "A002"]


async def test_appointment_on_time_first_in_its_slot_and_a_late_one_is_ordinary(
    tmp_path: Path,
) -> None:
    """Checked in on time: first once its slot starts. Late: queued as an ordinary ticket."""
    async with ticket_desk(tmp_path) as desk:
        slot = MONDAY_0900 + 600
        await desk.service.book_appointment("APT-1", "A", slot, slot + 1800, "city")
        await desk.service.book_appointment("APT-2", "A", MONDAY_0900 - 3600, MONDAY_0900, "city")
        await desk.take("A", green_channel=True)
        on_time = await desk.take(None, appointment_code="APT-1")
        late = await desk.take(None, appointment_code="APT-2")
        with pytest.raises(AppointmentError, match="already checked in"):
            await desk.take(None, appointment_code="APT-1")
        with pytest.raises(AppointmentError, match="no appointment"):
            await desk.take(None, appointment_code="APT-404")
        await desk.service.set_window_state("W01", "open", "api")
        before_slot = (await desk.service.call_next("W01", "api") or {})["ticket"]
        await desk.take("A", green_channel=True)
        await desk.clock.advance(600)
        in_slot = [(await desk.service.call_next("W01", "api") or {})["ticket"] for _ in range(3)]

    assert (on_time, late, before_slot) == ("A002", "A003", "A001")
    assert in_slot == ["A002", "A004", "A003"]


async def test_skip_requeue_once_recall_and_transfer(tmp_path: Path) -> None:
    """过号 then re-queue once (a second re-queue is refused); recall repeats the call;
    a transfer to a window is called there first, keeping its place."""
    async with ticket_desk(tmp_path) as desk:
        for _ in range(3):
            await desk.take("A")
        await desk.service.set_window_state("W01", "open", "api")
        await desk.service.set_window_state("W02", "open", "api")
        await desk.service.call_next("W01", "api")
        skipped = await desk.service.skip("W01", "api")
        await desk.clock.advance(60)
        await desk.service.requeue("A001", "api")
        second = await desk.service.call_next("W01", "api")
        recalled = await desk.service.recall("W01", "api")
        await desk.service.call_next("W01", "api")
        await desk.service.skip("W01", "api")
        after_second_skip = await desk.service.call_next("W01", "api")
        await desk.service.skip("W01", "api")
        with pytest.raises(TicketStateError, match="already re-queued once"):
            await desk.service.requeue("A001", "api")
        await desk.service.requeue("A003", "api")
        called = await desk.service.call_next("W01", "api")
        moved = await desk.service.transfer("W01", "api", to_category=None, to_window="W02")
        at_w02 = await desk.service.call_next("W02", "api")
        calls = desk.events("ticket_called") + desk.events("ticket_recalled")

    assert skipped["state"] == "skipped"
    assert (second or {})["ticket"] == "A002" and recalled["ticket"] == "A002"
    assert (after_second_skip or {})["ticket"] == "A001"
    assert (called or {})["ticket"] == "A003" and moved["state"] == "waiting"
    assert (at_w02 or {})["ticket"] == "A003" and (at_w02 or {})["window"] == "W02"
    assert sum(1 for event in calls if event["ticket"] == "A002") == 2


async def test_silent_calling_pushes_each_ticket_once_as_it_reaches_the_top_three(
    tmp_path: Path,
) -> None:
    """Five waiting: A001-A003 pushed at issue; A004, A005 only as calls move them up.
    Each push carries the ticket reference and position, never a phone number."""
    async with ticket_desk(tmp_path) as desk:
        for _ in range(5):
            await desk.take("A")
        pushed_at_issue = [event["ticket"] for event in desk.events("ticket_near")]
        await desk.service.set_window_state("W01", "open", "api")
        await desk.service.call_next("W01", "api")
        await desk.service.call_next("W01", "api")
        pushes = desk.events("ticket_near")
        refs = {row["label"]: row["ticket_ref"] for row in desk.rows("SELECT * FROM tickets")}

    assert pushed_at_issue == ["A001", "A002", "A003"]
    assert [(p["ticket"], p["position"]) for p in pushes[3:]] == [("A004", 3), ("A005", 3)]
    assert all(set(p) == {"ticket_ref", "ticket", "position"} for p in pushes)
    assert all(p["ticket_ref"] == refs[p["ticket"]] for p in pushes)


async def test_statistics_give_waiting_and_service_times_per_category_window_and_hour(
    tmp_path: Path,
) -> None:
    """Issued at 09:00, called after 5 and 10 minutes, each served 2 minutes."""
    async with ticket_desk(tmp_path) as desk:
        await desk.take("A")
        await desk.take("B")
        await desk.service.set_window_state("W01", "open", "api")
        await desk.clock.advance(300)
        await desk.service.call_next("W01", "api")
        await desk.clock.advance(300)
        await desk.service.call_next("W01", "api")
        await desk.clock.advance(120)
        await desk.service.set_window_state("W01", "closed", "api")
        stats = desk.service.statistics()
        view = desk.service.view()

    waiting, service = stats["waiting"], stats["service"]
    assert waiting["by_category"]["A"] == {"count": 1, "average_s": 300.0, "longest_s": 300.0}
    assert waiting["by_window"]["W01"]["average_s"] == 450.0
    assert waiting["by_hour"]["09"]["count"] == 2
    assert service["by_category"]["B"]["average_s"] == 120.0
    assert service["by_window"]["W01"] == {"count": 2, "average_s": 210.0, "longest_s": 300.0}
    assert [c["average_wait_s"] for c in view["categories"][:2]] == [300.0, 600.0]


def test_a_window_serving_an_unknown_category_is_refused_at_load(tmp_path: Path) -> None:
    """The configuration error names the file, the tickets section's line and the window."""
    path = tmp_path / "hallhub.yaml"
    path.write_text(
        "hub: {id: hall-x}\n"
        "tickets:\n"
        "  categories: {A: {name: General}}\n"
        "  windows:\n"
        "    W01: {categories: [A, Q]}\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as refused:
        load_config(path)

    assert "hallhub.yaml: line 2: tickets" in str(refused.value)
    assert "window W01 serves unknown categories ['Q']" in str(refused.value)


async def test_the_day_turns_at_the_halls_midnight_not_at_utc_midnight(tmp_path: Path) -> None:
    """At 07:59 and 08:01 Shanghai time (UTC midnight between) numbering goes on; across
    the hall's own midnight it restarts."""
    before_utc_midnight = MONDAY_0900 - 61 * 60  # 07:59 hall time, 23:59 UTC
    async with ticket_desk(tmp_path, wall=before_utc_midnight) as desk:
        first = await desk.take("A")
        desk.clock.jump_wall(120)
        across_utc_midnight = await desk.take("A")
        desk.clock.jump_wall(16 * 3600)  # 00:01 the next hall day
        next_day = await desk.take("A")
        days = [row["service_day"] for row in desk.rows("SELECT * FROM tickets")]

    assert (first, across_utc_midnight, next_day) == ("A001", "A002", "A001")
    assert days == ["2026-03-02", "2026-03-02", "2026-03-03"]
