"""Printers take tickets from a running hub over a real Mosquitto; the API and CLI call them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.simulators.printer import SimulatedTicketPrinter
from devices.simulators.publication_log import PublicationLog
from devices.simulators.ticket_rush import make_printers
from hub.broker import ManagedBroker
from hub.cli import main
from hub.service import HubService
from tests.hubkit import DeviceClient, Listener, eventually, hub_config
from tests.tickets.kit import TICKETS

PRINTERS = [f"printer-{n}" for n in range(1, 5)]
DEVICES = [{"id": name, "model": "ticket-printer-tp80", "zone": "f1-lobby"} for name in PRINTERS]


@pytest.fixture
async def hub(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    root = unique_topic_root.replace("/", "-")
    config = hub_config(tmp_path / "hub", broker.port, root, DEVICES, tickets=TICKETS)
    service = HubService(config)
    await service.start()
    assert service.ticket_desk.wait_subscribed(10)
    assert service.ingest.wait_subscribed(10)
    yield service
    await service.stop()


@pytest.fixture
async def printers(
    hub: HubService, broker: ManagedBroker, tmp_path: Path
) -> AsyncIterator[list[SimulatedTicketPrinter]]:
    log = PublicationLog(tmp_path / "published.jsonl")
    made = make_printers(
        PRINTERS, broker.port, hub.config.mqtt.topic_root, log, green_channel_share=0.0
    )
    for printer in made:
        await printer.start()
    yield made
    for printer in made:
        await printer.stop()
    log.close()


def _api(hub: HubService, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token if token is not None else hub.token}"}
    return httpx.AsyncClient(base_url=hub.console_url, headers=headers, timeout=10)


def _journaled(hub: HubService, type_: str) -> list[dict[str, Any]]:
    with hub.journal.reading() as conn:
        rows = conn.execute("SELECT data FROM events WHERE type = ? ORDER BY seq", (type_,))
        return [json.loads(row[0]) for row in rows]


async def test_printers_asking_at_once_get_distinct_numbers_committed_first(
    hub: HubService, printers: list[SimulatedTicketPrinter]
) -> None:
    """Four printers ask 25 times each at once: 100 distinct numbers A001-A100, each
    journaled as issued before it was printed, and each print journaled too."""

    async def ask(printer: SimulatedTicketPrinter) -> list[str | None]:
        return [await printer.take_ticket("A") for _ in range(25)]

    answers = await asyncio.gather(*(ask(printer) for printer in printers))
    for printer in printers:
        await printer.wait_acknowledged()
    printed = await eventually(
        lambda: len(_journaled(hub, "ticket")) == 100 and _journaled(hub, "ticket")
    )
    issued = _journaled(hub, "ticket_issued")

    numbers = [number for answer in answers for number in answer]
    assert sorted(numbers) == [f"A{n:03d}" for n in range(1, 101)]  # type: ignore[type-var]
    assert {(i["request_id"], i["ticket"]) for i in issued} == {
        (p["request_id"], p["ticket"]) for p in printed
    }
    assert sum(printer.please_wait for printer in printers) == 0


async def test_a_printer_says_please_wait_while_the_hub_does_not_answer(
    hub: HubService, printers: list[SimulatedTicketPrinter]
) -> None:
    """With the desk gone the printer prints nothing of its own; it counts a wait."""
    printer = printers[0]
    hub.ticket_desk.stop()

    number = await printer.take_ticket("A")

    assert number is None and printer.please_wait == 1
    assert printer.printed == {} and len(printer.unanswered) == 1
    assert _journaled(hub, "ticket") == []


async def test_unreadable_requests_are_kept_and_counted_and_the_desk_goes_on(
    hub: HubService, broker: ManagedBroker, printers: list[SimulatedTicketPrinter]
) -> None:
    """Garbage and an unknown category: kept as dead letter / refused; next request works."""
    root = hub.config.mqtt.topic_root
    device = DeviceClient(broker.port, "printer-rogue")
    try:
        device.publish(f"{root}/printer-1/tickets/request", b"\xff not json")
        refused = await printers[1].take_ticket("Z")
        number = await printers[1].take_ticket("B")
    finally:
        device.close()

    def kept() -> list[Any]:
        with hub.journal.reading() as conn:
            return conn.execute(
                "SELECT reason FROM dead_letters WHERE source LIKE '%tickets/request'"
            ).fetchall()

    assert [row[0] for row in await eventually(kept)] == ["not_json"]
    assert hub.ticket_desk.rejected == 1
    assert (refused, number) == (None, "B001")


async def test_calls_are_announced_and_the_api_shows_the_live_queue(
    hub: HubService, broker: ManagedBroker, printers: list[SimulatedTicketPrinter]
) -> None:
    """A window opened and called through the API: the call reaches MQTT, the queue view
    has the agreed shape, each action is audited, and no token means 401."""
    root = hub.config.mqtt.topic_root
    screens = Listener(broker.port, f"{root}/_hub/queue/#")
    try:
        await printers[0].take_ticket("A")
        await printers[1].take_ticket("B")
        async with _api(hub) as api:
            opened = await api.post("/api/queue/windows/W01/open")
            called = await api.post("/api/queue/windows/W01/call")
            view = (await api.get("/api/queue")).json()
            stats = await api.get("/api/queue/stats")
        async with _api(hub, token="wrong") as intruder:
            refused = await intruder.post("/api/queue/windows/W01/call")
            unread = await intruder.get("/api/queue")
        calls = await eventually(
            lambda: [m[1] for m in screens.messages if m[0].endswith("/calls")]
        )
        pushes = await eventually(
            lambda: [m[1] for m in screens.messages if m[0].endswith("/near")]
        )
    finally:
        screens.close()

    assert opened.status_code == 200 and called.json()["result"]["ticket"] == "A001"
    assert calls == [{"ticket": "A001", "window": "W01", "category": "A", "recall": False}]
    assert {(push["ticket"], push["position"]) for push in pushes} == {("A001", 1), ("B001", 1)}
    assert view["tickets_issued_today"] == 2
    assert view["categories"][1] == {
        "category": "B",
        "name": "Tax",
        "waiting": 1,
        "average_wait_s": 0.0,
    }
    assert view["windows"][0] == {
        "window": "W01",
        "state": "open",
        "serving": "A001",
        "categories": ["A", "B"],
    }
    assert stats.status_code == 200 and "by_hour" in stats.json()["waiting"]
    assert (refused.status_code, unread.status_code) == (401, 401)
    actions = [(e.actor, e.action, e.target) for e in hub.audit.entries()]
    assert ("api", "queue.call", "W01") in actions and ("api", "queue.open", "W01") in actions


async def test_the_queue_command_shows_and_acts_through_the_api(
    hub: HubService, printers: list[SimulatedTicketPrinter], capsys: pytest.CaptureFixture[str]
) -> None:
    """`hallhub queue open/call/skip/transfer` act; `--json` prints the API's view;
    a refused action exits 2 with the hub's reason."""
    token_file = str(hub.config.hub.state_dir / "api-token")

    def hallhub(*argv: str) -> Callable[[], int]:
        common = ["queue", "--url", hub.console_url, "--token-file", token_file]
        return lambda: main([*common, *argv])

    await printers[0].take_ticket("A")
    await printers[0].take_ticket("A")
    codes = [
        await asyncio.to_thread(hallhub(*argv))
        for argv in (
            ["open", "W01"],
            ["call", "W01"],
            ["skip", "W01"],
            ["call", "W01"],
            ["transfer", "W01", "--to-category", "B"],
            ["--json"],
        )
    ]
    out = capsys.readouterr().out
    refused = await asyncio.to_thread(hallhub("recall", "W02"))
    err = capsys.readouterr().err

    assert codes == [0] * 6
    assert "W01 is open" in out and "A001: skipped" in out and "A002: waiting" in out
    view = json.loads(out.strip().splitlines()[-1])
    assert view["categories"][1]["waiting"] == 1 and view["windows"][0]["serving"] is None
    assert refused == 2 and "404" in err and "serving no ticket" in err


async def test_appointments_and_requeue_through_the_api_and_bad_bodies_are_refused(
    hub: HubService, printers: list[SimulatedTicketPrinter]
) -> None:
    """An appointment registered through the API is checked in at a printer by its code;
    a skipped ticket is re-queued once through the API; bad requests get 400/404/409."""
    now = hub.clock.wall()
    async with _api(hub) as api:
        booked = await api.post(
            "/api/queue/appointments",
            json={"code": "APT-7", "category": "B", "slot_start": now, "slot_end": now + 1800},
        )
        missing = await api.post("/api/queue/appointments", json={"code": "APT-8"})
        number = await printers[0].take_ticket(appointment_code="APT-7")
        await api.post("/api/queue/windows/W02/open")
        await api.post("/api/queue/windows/W02/call")
        await api.post("/api/queue/windows/W02/skip")
        first = await api.post(f"/api/queue/tickets/{number}/requeue")
        second = await api.post(f"/api/queue/tickets/{number}/requeue")
        unknown = await api.post("/api/queue/windows/W09/call")
        wrong = await api.post("/api/queue/windows/W02/dance")
        await api.post("/api/queue/windows/W02/call")
        nowhere = await api.post("/api/queue/windows/W02/transfer", json={})

    assert booked.status_code == 200 and missing.status_code == 400
    assert number == "B001"
    assert first.json()["result"]["state"] == "waiting"
    assert second.status_code == 409 and "re-queued once" in second.json()["error"]
    assert (unknown.status_code, wrong.status_code) == (404, 404)
    assert nowhere.status_code == 400 and "give a category or a window" in nowhere.json()["error"]
