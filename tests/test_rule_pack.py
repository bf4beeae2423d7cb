"""The shipped rule pack, driven by simulated devices through a real Mosquitto.

The hub runs on a ManualClock set to a Monday morning in Shanghai, so hours of
holding and waiting pass in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devices.profiles import load_models, shipped_models_dir
from devices.simulators.mqtt_device import SimulatedMqttDevice
from devices.simulators.occupancy import SimulatedOccupancySensor
from devices.simulators.printer import SimulatedTicketPrinter
from devices.simulators.publication_log import PublicationLog
from devices.simulators.rating_pad import SimulatedRatingPad
from devices.simulators.toilet_alarm import SimulatedToiletAlarm
from hub.broker import ManagedBroker
from hub.clock import ManualClock
from hub.service import HubService
from tests.hubkit import Listener, eventually, hub_config
from tests.rulekit import advance, wall_at

MONDAY_10H = "2026-03-02 10:00"
DEVICES = [
    {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "1F accessible toilet"},
    {"id": "wc-occ", "model": "occupancy-sensor-os1", "zone": "1F accessible toilet"},
    {"id": "waiting-occ", "model": "occupancy-sensor-os1", "zone": "1F waiting zone"},
    {"id": "printer-1", "model": "ticket-printer-tp80", "zone": "1F entrance"},
    {"id": "kiosk-1", "model": "ticket-kiosk-tk20", "zone": "1F entrance"},
    {"id": "pad-w01", "model": "rating-pad-rp5", "zone": "1F windows", "window": "W01"},
]


@dataclass
class Hall:
    hub: HubService
    clock: ManualClock
    devices: dict[str, SimulatedMqttDevice]
    root: str

    def alerts(self, condition: str) -> list[dict[str, Any]]:
        with self.hub.journal.reading() as conn:
            rows = conn.execute("SELECT * FROM alerts WHERE condition = ?", (condition,))
            return [dict(row) for row in rows]

    async def holding(self, rule_id: str, key: str) -> None:
        """Wait until the hub has evaluated the event that starts a held state."""
        engine = self.hub.rules
        await eventually(
            lambda: (state := engine.engine.states.get((rule_id, key))) is not None and state.holds
        )


async def start_hall(
    tmp_path: Path, broker: ManagedBroker, root: str, wall: str
) -> AsyncIterator[Hall]:
    clock = ManualClock(wall=wall_at(wall))
    config = hub_config(tmp_path / "hub", broker.port, root, DEVICES, tickets=TICKETS)
    hub = HubService(config, clock=clock)
    await hub.start()
    assert hub.ingest.wait_subscribed(10)  # SUBACK: the broker now queues for the hub
    log = PublicationLog(tmp_path / "published.jsonl")
    models = load_models(shipped_models_dir())
    common: dict[str, Any] = {"clock": clock, "publication_log": log, "port": broker.port}
    common["topic_root"] = root
    devices: dict[str, SimulatedMqttDevice] = {
        "alarm-1": SimulatedToiletAlarm("alarm-1", models["toilet-alarm-ta1"], **common),
        "wc-occ": SimulatedOccupancySensor("wc-occ", models["occupancy-sensor-os1"], **common),
        "waiting-occ": SimulatedOccupancySensor(
            "waiting-occ", models["occupancy-sensor-os1"], **common
        ),
        "printer-1": SimulatedTicketPrinter("printer-1", models["ticket-printer-tp80"], **common),
        "kiosk-1": SimulatedTicketPrinter("kiosk-1", models["ticket-kiosk-tk20"], **common),
        "pad-w01": SimulatedRatingPad("pad-w01", models["rating-pad-rp5"], window="W01", **common),
    }
    for device in devices.values():
        await device.start()
    try:
        yield Hall(hub, clock, devices, root)
    finally:
        for device in devices.values():
            await device.stop()
        log.close()
        await hub.stop()


TICKETS = {"categories": {"A": {"name": "综合受理"}}, "windows": {"W01": {"categories": ["A"]}}}


@pytest.fixture
async def hall(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[Hall]:
    async for started in start_hall(
        tmp_path, broker, unique_topic_root.replace("/", "-"), MONDAY_10H
    ):
        yield started


async def test_toilet_call_raises_urgent_commands_lamp_and_clears_only_on_reset(
    hall: Hall, broker: ManagedBroker
) -> None:
    """A press opens one urgent duty-desk alert and lamp on; hours pass, only reset closes it."""
    alarm = hall.devices["alarm-1"]
    assert isinstance(alarm, SimulatedToiletAlarm)
    lamp = Listener(broker.port, f"{hall.root}/alarm-1/command/#")
    try:
        alarm.press()
        opened = await eventually(lambda: hall.alerts("toilet_call"))
        await eventually(lambda: lamp.messages)
        await advance(hall.clock, 3 * 3600, step=600)
        assert hall.alerts("toilet_call")[0]["state"] == "open"
        alarm.reset()
        await eventually(lambda: hall.alerts("toilet_call")[0]["state"] == "resolved")
        await eventually(lambda: len(lamp.messages) == 2)
    finally:
        lamp.close()
    assert opened[0]["severity"] == "urgent" and opened[0]["team"] == "duty_desk"
    bodies = [m[1] for m in lamp.messages]
    assert [{k: v for k, v in b.items() if k != "request_id"} for b in bodies] == [
        {"state": "on"},
        {"state": "off"},
    ]
    assert len({b["request_id"] for b in bodies}) == 2  # each command tracked on its own


async def test_redelivered_press_raises_nothing_new(hall: Hall) -> None:
    """The same press delivered twice (same bytes, same id) is one event and one count."""
    payload = b'{"msg_id": "boot1-7", "ts": 1772416800, "source": "cord"}'
    client = hall.hub.ingest  # the hub's own client publishes like a device would
    for _ in range(2):
        client.publish(f"{hall.root}/alarm-1/call", payload)
    await eventually(lambda: hall.alerts("toilet_call"))
    time.sleep(0.3)
    with hall.hub.journal.reading() as conn:
        firings = conn.execute(
            "SELECT COUNT(*) FROM rule_firings WHERE rule_id = 'toilet-call'"
        ).fetchone()[0]
    assert firings == 1
    assert hall.alerts("toilet_call")[0]["count"] == 1


async def test_accessible_toilet_occupied_thirty_minutes_raises_welfare_check(
    hall: Hall,
) -> None:
    """Occupied for 29 min: nothing; at 30 min: a welfare check; empty again: it clears."""
    sensor = hall.devices["wc-occ"]
    assert isinstance(sensor, SimulatedOccupancySensor)
    sensor.set_occupancy(1)
    await hall.holding("accessible-toilet-occupied", "wc-occ")
    await advance(hall.clock, 29 * 60, step=30)
    assert hall.alerts("welfare_check") == []
    await advance(hall.clock, 61)
    alert = await eventually(lambda: hall.alerts("welfare_check"))
    sensor.set_occupancy(0)
    await eventually(lambda: hall.alerts("welfare_check")[0]["state"] == "resolved")
    assert "1F accessible toilet" in alert[0]["message"]


async def test_movement_in_the_accessible_toilet_restarts_the_welfare_timer(
    hall: Hall,
) -> None:
    """Movement reported at 20 min restarts the 30 min; no check until 30 min after it."""
    sensor = hall.devices["wc-occ"]
    assert isinstance(sensor, SimulatedOccupancySensor)
    sensor.set_occupancy(1, motion=False)
    await hall.holding("accessible-toilet-occupied", "wc-occ")
    await advance(hall.clock, 20 * 60, step=60)
    sensor.report(motion=True)
    await eventually(lambda: not _holds(hall, "accessible-toilet-occupied", "wc-occ"))
    sensor.report(motion=False)
    await hall.holding("accessible-toilet-occupied", "wc-occ")
    await advance(hall.clock, 25 * 60, step=60)
    assert hall.alerts("welfare_check") == []
    await advance(hall.clock, 6 * 60, step=60)
    await eventually(lambda: hall.alerts("welfare_check"))


async def test_printer_jam_raises_and_clearing_it_resolves(hall: Hall) -> None:
    """A kiosk reporting a jam raises a crew condition; clearing the jam resolves it."""
    kiosk = hall.devices["kiosk-1"]
    assert isinstance(kiosk, SimulatedTicketPrinter)
    kiosk.jam()
    jam = await eventually(lambda: hall.alerts("printer_jam"))
    kiosk.clear_jam()
    await eventually(lambda: hall.alerts("printer_jam")[0]["state"] == "resolved")
    assert jam[0]["team"] == "device_crew" and "kiosk-1" in jam[0]["message"]


async def test_crowding_in_open_hours_with_hysteresis(hall: Hall) -> None:
    """45 waiting for 10 min: 'open more windows' with the count; 35 keeps it; 25 clears it."""
    sensor = hall.devices["waiting-occ"]
    assert isinstance(sensor, SimulatedOccupancySensor)
    sensor.set_occupancy(45)
    await hall.holding("crowding", "1F waiting zone")
    await advance(hall.clock, 601)
    alert = (await eventually(lambda: hall.alerts("crowding")))[0]
    assert "45 people waiting, open more windows" in alert["message"]
    sensor.set_occupancy(35)
    await eventually(lambda: _zone_state(hall, "crowded") == "true")
    time.sleep(0.2)
    assert hall.alerts("crowding")[0]["state"] == "open"
    sensor.set_occupancy(25)
    await eventually(lambda: hall.alerts("crowding")[0]["state"] == "resolved")
    assert await eventually(lambda: _zone_state(hall, "crowded") == "false")


async def test_printer_paper_low_and_out_raise_and_refill_clears(hall: Hall) -> None:
    """Paper low, then out, each raise a crew condition; a new roll clears both."""
    printer = hall.devices["printer-1"]
    assert isinstance(printer, SimulatedTicketPrinter)
    printer.paper_left = 31
    printer.print_ticket("A001", "A")
    await eventually(lambda: hall.alerts("paper_low"))
    printer.paper_left = 1
    printer.print_ticket("A002", "A")
    out = await eventually(lambda: hall.alerts("paper_out"))
    printer.refill_paper()
    await eventually(lambda: hall.alerts("paper_out")[0]["state"] == "resolved")
    await eventually(lambda: hall.alerts("paper_low")[0]["state"] == "resolved")
    assert out[0]["team"] == "device_crew"


async def test_device_offline_five_minutes_in_open_hours(hall: Hall) -> None:
    """A printer losing power at 10:00 pages the crew after 5 minutes, not before."""
    printer = hall.devices["printer-1"]
    await printer.cut_power()
    await eventually(lambda: _offline_events(hall, "printer-1"))
    await hall.holding("device-offline", "printer-1")
    await advance(hall.clock, 290)
    assert hall.alerts("offline") == [] or all(
        a["device_id"] != "printer-1" for a in hall.alerts("offline")
    )
    await advance(hall.clock, 15)
    await eventually(lambda: [a for a in hall.alerts("offline") if a["device_id"] == "printer-1"])


async def test_device_powered_down_after_hours_pages_nobody(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """At 19:00 a printer goes off for the night; an hour later nobody has been paged."""
    root = unique_topic_root.replace("/", "-")
    async for hall in start_hall(tmp_path, broker, root, "2026-03-02 19:00"):
        await hall.devices["printer-1"].cut_power()
        await hall.holding("device-offline", "printer-1")
        await advance(hall.clock, 3600, step=60)
        assert [a for a in hall.alerts("offline") if a["device_id"] == "printer-1"] == []


async def test_bad_rating_raises_supervisor_condition(hall: Hall) -> None:
    """A 不满意 rating raises a supervisor condition naming the window; 满意 does not."""
    pad = hall.devices["pad-w01"]
    assert isinstance(pad, SimulatedRatingPad)
    pad.rate("满意")
    pad.rate("不满意")
    alert = (await eventually(lambda: hall.alerts("bad_rating")))[0]
    assert alert["team"] == "supervisor" and "W01" in alert["message"]
    assert "不满意" in alert["message"]


async def test_burst_of_ratings_from_one_pad_raises_integrity_condition(hall: Hall) -> None:
    """Five ratings in a row from one pad, no ticket served there: an integrity condition."""
    pad = hall.devices["pad-w01"]
    assert isinstance(pad, SimulatedRatingPad)
    for _ in range(4):
        pad.rate("非常满意")
    time.sleep(0.3)
    assert hall.alerts("rating_integrity") == []
    pad.rate("非常满意")
    alert = (await eventually(lambda: hall.alerts("rating_integrity")))[0]
    assert "5 ratings" in alert["message"]


async def test_ratings_after_tickets_called_to_their_window_raise_nothing(hall: Hall) -> None:
    """The same burst, but the queue has just called a ticket to that window: no alert."""
    printer = hall.devices["printer-1"]
    assert isinstance(printer, SimulatedTicketPrinter)
    assert await printer.take_ticket("A") is not None
    await hall.hub.tickets.set_window_state("W01", "open", "test")
    assert await hall.hub.tickets.call_next("W01", "test") is not None
    pad = hall.devices["pad-w01"]
    assert isinstance(pad, SimulatedRatingPad)
    for _ in range(6):
        pad.rate("非常满意")
    await eventually(lambda: _ratings_journaled(hall) >= 6)
    time.sleep(0.3)
    assert hall.alerts("rating_integrity") == []


def _ratings_journaled(hall: Hall) -> int:
    with hall.hub.journal.reading() as conn:
        row = conn.execute("SELECT COUNT(*) FROM events WHERE device_id = 'pad-w01'").fetchone()
    return int(row[0])


def _holds(hall: Hall, rule_id: str, key: str) -> bool:
    state = hall.hub.rules.engine.states.get((rule_id, key))
    return state is not None and state.holds


def _zone_state(hall: Hall, state: str) -> str | None:
    with hall.hub.journal.reading() as conn:
        row = conn.execute("SELECT value FROM zone_states WHERE state = ?", (state,)).fetchone()
    return None if row is None else str(row[0])


def _offline_events(hall: Hall, device_id: str) -> int:
    with hall.hub.journal.reading() as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM events WHERE device_id = ? AND type = 'offline'",
                (device_id,),
            ).fetchone()[0]
        )
