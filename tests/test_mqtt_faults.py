"""MQTT simulator faults (silent, garbage, flap, reboot) and what the hub makes of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devices.profiles import load_models, shipped_models_dir
from devices.simulators import PublicationLog, SimulatedTicketPrinter
from devices.simulators.mqtt_faults import GARBAGE_PAYLOADS, MqttFault, strike
from hub.broker import ManagedBroker
from hub.cli import main
from hub.clock import ManualClock, SystemClock
from hub.service import HubService
from tests.hubkit import eventually, hub_config
from tests.test_simulators import Listener

MODEL = load_models(shipped_models_dir())["ticket-printer-tp80"]


def _rows(hub: HubService, sql: str) -> list[Any]:
    with hub.journal.reading() as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
async def printer_and_hub(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[tuple[SimulatedTicketPrinter, HubService]]:
    root = unique_topic_root.replace("/", "-")
    devices = [{"id": "printer-f", "model": "ticket-printer-tp80", "zone": "1F entrance"}]
    hub = HubService(hub_config(tmp_path / "hub", broker.port, root, devices))
    await hub.start()
    assert hub.ingest.wait_subscribed(10)
    log = PublicationLog(tmp_path / "published.jsonl")
    printer = SimulatedTicketPrinter(
        "printer-f", MODEL, clock=SystemClock(), publication_log=log, port=broker.port,
        topic_root=root, heartbeat_interval=3600.0,
    )  # fmt: skip
    await printer.start()
    await eventually(lambda: hub.registry.get("printer-f").online)  # type: ignore[union-attr]
    yield printer, hub
    await printer.stop()
    log.close()
    await hub.stop()


async def test_garbage_is_dead_lettered_and_the_printer_goes_on(
    printer_and_hub: tuple[SimulatedTicketPrinter, HubService],
) -> None:
    """Every garbage payload is kept as a dead letter with its reason, and the
    printer's next ticket is journaled as usual."""
    printer, hub = printer_and_hub
    strike(printer, MqttFault.GARBAGE)
    printer.print_ticket("A001", "A")

    await eventually(lambda: _rows(hub, "SELECT 1 FROM events WHERE type = 'ticket'"))
    sql = "SELECT reason, SUM(count) FROM dead_letters GROUP BY reason"
    kept = await eventually(
        lambda: (
            dict(_rows(hub, sql))
            if sum(n for _, n in _rows(hub, sql)) == len(GARBAGE_PAYLOADS)
            else None
        )
    )
    assert {"not_utf8", "not_json", "oversize"} <= set(kept)


async def test_flap_fires_the_last_will_then_the_printer_is_back(
    printer_and_hub: tuple[SimulatedTicketPrinter, HubService],
) -> None:
    """A broken link makes the broker publish the printer's will (the hub journals it
    offline, for that reason); the printer reconnects and is online again."""
    printer, hub = printer_and_hub
    strike(printer, MqttFault.FLAP)

    sql = "SELECT data FROM events WHERE device_id = 'printer-f' AND type = 'offline'"
    offline = await eventually(lambda: _rows(hub, sql))
    assert json.loads(offline[0][0])["reason"] == "device reported offline (last will)"
    back = "SELECT 1 FROM events WHERE device_id = 'printer-f' AND type = 'online'"
    await eventually(lambda: len(_rows(hub, back)) >= 2)
    assert hub.registry.get("printer-f").online  # type: ignore[union-attr]


async def test_reboot_restarts_ticket_numbers_under_a_new_boot_id(
    printer_and_hub: tuple[SimulatedTicketPrinter, HubService],
) -> None:
    """After a reboot the printer counts its message ids from 1 again, under a new boot
    id: the same ticket printed before and after (a reprint) stays two distinct events,
    never taken for a redelivery of the first."""
    printer, hub = printer_and_hub
    printer.print_ticket("A001", "A")
    boot_before = printer.boot_id
    strike(printer, MqttFault.REBOOT)
    await eventually(lambda: not printer.connected)
    await eventually(lambda: printer.connected)
    printer.print_ticket("A001", "A")

    tickets = await eventually(
        lambda: (rows if len(rows := _rows(hub, "SELECT event_id, data FROM events "
                                             "WHERE type = 'ticket'")) == 2 else None)
    )  # fmt: skip
    assert [json.loads(data)["ticket"] for _, data in tickets] == ["A001", "A001"]
    assert tickets[0][0] != tickets[1][0] and printer.boot_id != boot_before


async def test_silent_printer_keeps_its_connection_but_publishes_nothing(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A silent device sends no heartbeat and no ticket, yet stays connected, so no
    last will fires: only the heartbeat timeout can tell the hub."""
    clock = ManualClock()
    listener = Listener(broker, f"{unique_topic_root}/#")
    log = PublicationLog(tmp_path / "published.jsonl")
    printer = SimulatedTicketPrinter(
        "printer-s", MODEL, clock=clock, publication_log=log, port=broker.port,
        topic_root=unique_topic_root, heartbeat_interval=30.0,
    )  # fmt: skip
    try:
        await listener.ready()
        await printer.start()
        await eventually(lambda: len(listener.documents("status")) == 1)
        strike(printer, MqttFault.SILENT)
        beating = asyncio.create_task(printer.run())
        await clock.advance(300)
        printer.print_ticket("A001", "A")
        await asyncio.sleep(0.3)  # anything sent would have arrived by now
        beating.cancel()

        assert listener.documents("heartbeat") == listener.documents("ticket") == []
        assert printer.connected and listener.documents("status")[0]["online"] is True
    finally:
        await printer.stop()
        listener.close()
        log.close()


def test_simulate_names_the_bad_fault_switch(
    broker: ManagedBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown fault kind or device stops ``hallhub simulate`` before it starts,
    with an error that says what is allowed."""
    common = ["simulate", "--broker-port", str(broker.port), "--log", str(tmp_path / "p.jsonl")]

    assert main([*common, "--fault", "explode:printer-1f-01"]) == 2
    assert "silent, garbage, flap, reboot" in capsys.readouterr().err
    assert main([*common, "--fault", "flap:printer-9z"]) == 2
    assert "printer-9z" in capsys.readouterr().err
