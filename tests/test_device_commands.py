"""Device commands: request ids, acknowledgements from the simulators, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.commands import DeviceCommands
from devices.errors import CommandError
from devices.profiles import load_models, shipped_models_dir
from devices.registry import Registry
from devices.simulators import (
    PublicationLog,
    SimulatedRatingPad,
    SimulatedTicketPrinter,
    SimulatedToiletAlarm,
)
from hub.broker import ManagedBroker
from hub.clock import ManualClock, SystemClock
from hub.config import DeviceSpec
from hub.journal import Journal
from hub.service import HubService
from tests.hubkit import eventually, hub_config

DEVICES = [
    {"id": "printer-1", "model": "ticket-printer-tp80", "zone": "1F entrance"},
    {"id": "pad-w01", "model": "rating-pad-rp5", "zone": "1F windows", "window": "W01"},
    {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "1F accessible toilet"},
]


@dataclass
class Hall:
    hub: HubService
    printer: SimulatedTicketPrinter
    pad: SimulatedRatingPad
    alarm: SimulatedToiletAlarm

    async def post(self, device_id: str, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.hub.console_url) as http:
            auth = {"Authorization": f"Bearer {self.hub.token}"}
            return await http.post(f"/api/devices/{device_id}/commands", json=body, headers=auth)

    async def state_of(self, device_id: str, request_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.hub.console_url) as http:
            auth = {"Authorization": f"Bearer {self.hub.token}"}
            path = f"/api/devices/{device_id}/commands/{request_id}"
            command: dict[str, Any] = (await http.get(path, headers=auth)).json()["command"]
            return command

    async def settled(self, device_id: str, request_id: str) -> dict[str, Any]:
        """The command once the device has answered it."""
        command: dict[str, Any] = {}

        async def answered() -> bool:
            command.update(await self.state_of(device_id, request_id))
            return command["state"] != "sent"

        await eventually_async(answered)
        return command


async def eventually_async(check: Callable[[], Awaitable[bool]], attempts: int = 500) -> None:
    """Await `check` until it is true, or fail after `attempts` tries 20 ms apart."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


@pytest.fixture
async def hall(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[Hall]:
    root = unique_topic_root.replace("/", "-")
    tickets = {"categories": {"A": {"name": "综合受理"}, "B": {"name": "不动产"}}}
    hub = HubService(hub_config(tmp_path / "hub", broker.port, root, DEVICES, tickets=tickets))
    await hub.start()
    assert hub.ingest.wait_subscribed(10)
    models = load_models(shipped_models_dir())
    log = PublicationLog(tmp_path / "published.jsonl")
    common: dict[str, Any] = {
        "clock": SystemClock(),
        "publication_log": log,
        "port": broker.port,
        "topic_root": root,
        "heartbeat_interval": 3600.0,
    }
    printer = SimulatedTicketPrinter("printer-1", models["ticket-printer-tp80"], **common)
    pad = SimulatedRatingPad("pad-w01", models["rating-pad-rp5"], window="W01", **common)
    alarm = SimulatedToiletAlarm("alarm-1", models["toilet-alarm-ta1"], **common)
    devices = (printer, pad, alarm)
    for simulated in devices:
        await simulated.start()
    for simulated in devices:  # online: the subscription to its commands is in place
        await eventually(lambda s=simulated: hub.registry.get(s.device_id).online)  # type: ignore[union-attr]
    yield Hall(hub, printer, pad, alarm)
    for simulated in devices:
        await simulated.stop()
    log.close()
    await hub.stop()


async def test_printer_changes_header_and_prints_a_ticket_on_command(hall: Hall) -> None:
    """Each command gets its own request id, the printer acknowledges it, and the
    command goes to "done"; the ticket it then prints, numbered by the hub, is
    journaled like any other."""
    header = await hall.post("printer-1", {"command": "set_header", "args": {"text": "欢迎办事"}})
    ticket = await hall.post("printer-1", {"command": "print_ticket", "args": {"category": "B"}})
    assert header.status_code == ticket.status_code == 202
    first, second = header.json()["command"], ticket.json()["command"]
    assert first["state"] == "sent" and first["request_id"] != second["request_id"]

    assert (await hall.settled("printer-1", first["request_id"]))["state"] == "done"
    assert (await hall.settled("printer-1", second["request_id"]))["state"] == "done"
    assert hall.printer.header == "欢迎办事"

    def printed() -> object:
        with hall.hub.journal.reading() as conn:
            return conn.execute("SELECT data FROM events WHERE type = 'ticket'").fetchone()

    row = await eventually(printed)
    assert '"B001"' in row[0]


async def test_pad_refuses_a_prompt_for_another_window_and_accepts_its_own(hall: Hall) -> None:
    """A pad asked to prompt for a window it does not serve refuses, with its reason."""
    wrong = await hall.post("pad-w01", {"command": "prompt_rating", "args": {"window": "W09"}})
    right_args = {"window": "W01", "case_no": "C0001"}
    right = await hall.post("pad-w01", {"command": "prompt_rating", "args": right_args})

    refused = await hall.settled("pad-w01", wrong.json()["command"]["request_id"])
    done = await hall.settled("pad-w01", right.json()["command"]["request_id"])
    assert refused["state"] == "refused" and "W01" in refused["detail"]
    assert done["state"] == "done" and hall.pad.prompted_case == "C0001"


async def test_bad_commands_are_refused_before_sending(hall: Hall) -> None:
    """An unknown command or arguments outside the model get 400 and reach no device."""
    unknown = await hall.post("printer-1", {"command": "self_destruct"})
    bad_args = await hall.post("alarm-1", {"command": "lamp", "args": {"state": "blink"}})
    no_device = await hall.post("printer-77", {"command": "set_header", "args": {"text": "x"}})

    assert unknown.status_code == bad_args.status_code == 400
    assert "blink" in bad_args.json()["error"] and no_device.status_code == 404
    assert hall.alarm.commands_received == [] and hall.printer.commands_received == []


async def test_rules_switch_the_alarm_lamp_through_the_same_tracked_service(hall: Hall) -> None:
    """The shipped rule pack turns the lamp on at a call; that command is tracked,
    sent by "rules", and acknowledged by the alarm like one from the console."""
    hall.alarm.press("cord")

    await eventually(lambda: hall.alarm.lamp == "on")
    commands = hall.hub.device_commands.for_device("alarm-1")
    assert commands[0]["sent_by"] == "rules" and commands[0]["args"] == {"state": "on"}
    settled = await hall.settled("alarm-1", commands[0]["request_id"])
    assert settled["state"] == "done"


async def test_unanswered_command_fails_after_the_models_timeout(tmp_path: Path) -> None:
    """A command nobody acknowledges stays "sent" until the model's command_timeout
    (10 s) has passed, then goes to "failed" saying why."""
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.sqlite3", "hall-test")
    journal.open()
    registry = Registry(
        [DeviceSpec(id="printer-1", model="ticket-printer-tp80")], load_models(shipped_models_dir())
    )
    sent: list[tuple[str, bytes]] = []
    commands = DeviceCommands(registry, journal, clock, lambda t, p: sent.append((t, p)), "hall")
    try:
        await commands.open()
        record = await commands.send("printer-1", "set_header", {"text": "x"}, "it-li")
        assert sent[0][0] == "hall/printer-1/command/set_header"
        assert record["request_id"].encode() in sent[0][1]

        await clock.advance(9.5)
        assert await commands.expire() == []
        await clock.advance(1.0)
        assert await commands.expire() == [record["request_id"]]
        failed = commands.record(record["request_id"])
        assert failed is not None and failed["state"] == "failed"
        assert failed["detail"] == "no ack within 10 s"
        with pytest.raises(CommandError):
            await commands.send("printer-1", "lamp", {"state": "on"}, "it-li")
    finally:
        journal.close()
