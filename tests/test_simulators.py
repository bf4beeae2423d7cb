"""Simulated devices against a real Mosquitto (started by the suite) and pymodbus.

Each test listens with its own MQTT client under a topic root no other test uses,
so tests share the session broker without seeing each other's messages. Tests that
take the broker away use a broker of their own.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.errors import SimulatorError
from devices.modbus_line import LineSettings, ModbusLine
from devices.modbus_poller import ModbusPoller, Reading
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.simulators import (
    SimulatedHall,
    SimulatedMqttDevice,
    SimulatedOccupancySensor,
    SimulatedPeopleCounter,
    SimulatedRatingPad,
    SimulatedTicketPrinter,
    SimulatedToiletAlarm,
    read_publication_log,
)
from devices.simulators.publication_log import PublicationLog
from hub.broker import ManagedBroker
from hub.clock import ManualClock
from hub.config import DeviceSpec
from hub.events import device_event_id

MODELS = load_models(shipped_models_dir())


class Listener:
    """A plain MQTT subscriber recording every message under one topic filter."""

    def __init__(self, broker: ManagedBroker, topic_filter: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topic_filter = topic_filter
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"listener-{secrets.token_hex(4)}"
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    async def ready(self) -> None:
        assert await asyncio.to_thread(self._subscribed.wait, 5.0), "no SUBACK"

    def documents(self, message: str | None = None) -> list[dict[str, Any]]:
        """Payloads received, optionally only those of one message name."""
        with self._lock:
            received = list(self.messages)
        return [
            json.loads(item.payload)
            for item in received
            if message is None or item.topic.rsplit("/", 1)[-1] == message
        ]

    def retained_flags(self, message: str) -> list[bool]:
        with self._lock:
            return [bool(m.retain) for m in self.messages if m.topic.endswith("/" + message)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self._topic_filter, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def listen(unique_topic_root: str) -> Iterator[Callable[[ManagedBroker, str], Listener]]:
    """Make listeners on `<unique root>/<suffix>`; all are closed after the test."""
    listeners: list[Listener] = []

    def make(broker: ManagedBroker, suffix: str = "#") -> Listener:
        listener = Listener(broker, f"{unique_topic_root}/{suffix}")
        listeners.append(listener)
        return listener

    yield make
    for listener in listeners:
        listener.close()


@pytest.fixture
def publication_log(tmp_path: Path) -> Iterator[PublicationLog]:
    log = PublicationLog(tmp_path / "published.jsonl")
    yield log
    log.close()


@pytest.fixture
async def make_device(
    unique_topic_root: str, publication_log: PublicationLog
) -> AsyncIterator[Callable[..., Any]]:
    """Build simulated devices on this test's topic root; stops them all afterwards."""
    made: list[SimulatedMqttDevice] = []

    def make(
        device_class: type[SimulatedMqttDevice],
        device_id: str,
        model: str,
        broker: ManagedBroker,
        **options: Any,
    ) -> Any:
        options.setdefault("clock", ManualClock())
        device = device_class(
            device_id,
            MODELS[model],
            publication_log=publication_log,
            host=broker.host,
            port=broker.port,
            topic_root=unique_topic_root,
            **options,
        )
        made.append(device)
        return device

    yield make
    for device in made:
        await device.stop(timeout=1.0)


def logged_event_ids(log: PublicationLog) -> list[str]:
    return [entry["event_id"] for entry in read_publication_log(log.path)]


# -- the MQTT conventions ----------------------------------------------------------


async def test_connect_publishes_retained_online_status(
    broker: ManagedBroker, listen: Callable[..., Listener], make_device: Callable[..., Any]
) -> None:
    """On connect a device publishes status {"online": true} retained, with msg_id and ts,
    on <root>/<device id>/status, so a listener arriving later still sees it."""
    printer: SimulatedTicketPrinter = make_device(
        SimulatedTicketPrinter, "printer-t1", "ticket-printer-tp80", broker
    )
    await printer.start()
    await printer.wait_acknowledged()

    late_listener = listen(broker, "printer-t1/status")
    await late_listener.ready()
    await wait_until(lambda: bool(late_listener.documents()))
    await printer.stop()

    (status,) = late_listener.documents()
    assert status["online"] is True and status["paper"] == "ok"
    assert status["firmware"] == "2.4"
    assert status["msg_id"].startswith(printer.boot_id + "-")
    assert isinstance(status["ts"], float)
    assert late_listener.retained_flags("status") == [True]


async def test_messages_follow_the_model_and_carry_unique_ids(
    broker: ManagedBroker,
    listen: Callable[..., Listener],
    make_device: Callable[..., Any],
    publication_log: PublicationLog,
) -> None:
    """Printed tickets follow the model; every msg_id is distinct and the logged event
    id is device_event_id(device id, msg_id)."""
    listener = listen(broker)
    await listener.ready()
    printer: SimulatedTicketPrinter = make_device(
        SimulatedTicketPrinter, "printer-t2", "ticket-kiosk-tk20", broker
    )
    await printer.start()

    numbers = [
        printer.print_ticket("A001", "A"),
        printer.print_ticket("A002", "A"),
        printer.print_ticket("B001", "B"),
    ]
    await printer.wait_acknowledged()
    await wait_until(lambda: len(listener.documents("ticket")) == 3)
    await printer.stop()

    assert numbers == ["A001", "A002", "B001"]
    tickets = listener.documents("ticket")
    assert [t["ticket"] for t in tickets] == numbers
    assert [t["category"] for t in tickets] == ["A", "A", "B"]
    every_id = [document["msg_id"] for document in listener.documents()]
    assert len(set(every_id)) == len(every_id)
    expected = {device_event_id("printer-t2", t["msg_id"]) for t in tickets}
    assert expected <= set(logged_event_ids(publication_log))


async def test_msg_ids_differ_across_restarts(
    broker: ManagedBroker, make_device: Callable[..., Any]
) -> None:
    """A device restarted with the same id gets a new boot id, so no msg_id repeats."""
    first: SimulatedToiletAlarm = make_device(
        SimulatedToiletAlarm, "alarm-t3", "toilet-alarm-ta1", broker
    )
    second: SimulatedToiletAlarm = make_device(
        SimulatedToiletAlarm, "alarm-t3", "toilet-alarm-ta1", broker
    )

    assert first.boot_id != second.boot_id
    assert first.press() != second.press()  # queued before connecting; ids differ anyway


async def test_a_payload_that_breaks_the_model_is_refused(
    broker: ManagedBroker, make_device: Callable[..., Any]
) -> None:
    """A rating level that is not one of the five names never leaves the simulator."""
    pad: SimulatedRatingPad = make_device(
        SimulatedRatingPad, "pad-t4", "rating-pad-rp5", broker, window="W09"
    )
    with pytest.raises(SimulatorError, match="rating breaks its model"):
        pad.rate("很好")


# -- PUBACK and the last will ------------------------------------------------------


async def test_the_publication_log_holds_only_acknowledged_messages(
    fresh_broker: ManagedBroker,
    listen: Callable[..., Listener],
    make_device: Callable[..., Any],
    publication_log: PublicationLog,
) -> None:
    """Messages the broker PUBACKed are logged; one sent while the broker is down is
    not, and stays out when the device then loses power before any PUBACK."""
    listener = listen(fresh_broker)
    await listener.ready()
    pad: SimulatedRatingPad = make_device(
        SimulatedRatingPad, "pad-t5", "rating-pad-rp5", fresh_broker, window="W01"
    )
    await pad.start()
    accepted = pad.rate("满意")
    await pad.wait_acknowledged()
    await wait_until(lambda: len(listener.documents("rating")) == 1)

    await asyncio.to_thread(fresh_broker.stop)
    await wait_until(lambda: not pad.connected)
    lost = pad.rate("非常不满意")
    await asyncio.sleep(0.3)
    assert pad.pending == 1
    await pad.cut_power()

    logged = logged_event_ids(publication_log)
    assert accepted in logged
    assert lost not in logged
    received = {device_event_id("pad-t5", d["msg_id"]) for d in listener.documents()}
    assert set(logged) <= received  # every logged message really reached the broker


async def test_the_last_will_fires_on_power_loss(
    broker: ManagedBroker, listen: Callable[..., Listener], make_device: Callable[..., Any]
) -> None:
    """An abrupt disconnect makes the broker publish {"online": false} retained, with a
    msg_id of its own; a clean stop does not."""
    listener = listen(broker, "+/status")
    await listener.ready()
    alarm: SimulatedToiletAlarm = make_device(
        SimulatedToiletAlarm, "alarm-t6", "toilet-alarm-wireless-ta2", broker
    )
    sensor: SimulatedOccupancySensor = make_device(
        SimulatedOccupancySensor, "occupancy-t6", "occupancy-sensor-os1", broker
    )
    await asyncio.gather(alarm.start(), sensor.start())
    await wait_until(lambda: len(listener.documents()) == 2)

    await alarm.cut_power()
    await sensor.stop()
    await wait_until(lambda: len(listener.documents()) == 3)
    await asyncio.sleep(0.2)  # a will from the cleanly stopped sensor would arrive now

    online, offline = [d for d in listener.documents() if d["msg_id"].startswith(alarm.boot_id)]
    assert online["online"] is True and 0 <= online["battery"] <= 100
    assert offline["online"] is False and offline["msg_id"] != online["msg_id"]
    assert len(listener.documents()) == 3

    late_listener = listen(broker, "alarm-t6/status")
    await late_listener.ready()
    await wait_until(lambda: bool(late_listener.documents()))
    assert late_listener.documents()[0]["online"] is False
    assert late_listener.retained_flags("status") == [True]


# -- device kinds ------------------------------------------------------------------


async def test_toilet_alarm_press_and_reset(
    broker: ManagedBroker, listen: Callable[..., Listener], make_device: Callable[..., Any]
) -> None:
    """press() sends call and a latched status; reset() sends reset and clears the latch."""
    listener = listen(broker)
    await listener.ready()
    alarm: SimulatedToiletAlarm = make_device(
        SimulatedToiletAlarm, "alarm-t7", "toilet-alarm-ta1", broker
    )
    await alarm.start()

    alarm.press("cord")
    alarm.reset()
    await alarm.wait_acknowledged()
    await wait_until(lambda: len(listener.documents()) == 5)
    await alarm.stop()

    assert [call["source"] for call in listener.documents("call")] == ["cord"]
    assert len(listener.documents("reset")) == 1
    assert [s["latched"] for s in listener.documents("status")] == [False, True, False]


async def test_heartbeats_and_behaviour_follow_the_injected_clock(
    broker: ManagedBroker, listen: Callable[..., Listener], make_device: Callable[..., Any]
) -> None:
    """With a manual clock, 95 s of simulated time give 3 heartbeats (every 30 s) and
    occupancy reports every 10 s divided by the speed, without real waiting."""
    listener = listen(broker)
    await listener.ready()
    clock = ManualClock()
    sensor: SimulatedOccupancySensor = make_device(
        SimulatedOccupancySensor,
        "occupancy-t8",
        "occupancy-sensor-os1",
        broker,
        clock=clock,
        speed=2.0,
    )
    await sensor.start()
    running = asyncio.create_task(sensor.run())
    await asyncio.sleep(0.01)  # let its tasks start and wait on the clock

    await clock.advance(95)
    await sensor.wait_acknowledged()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await wait_until(lambda: len(listener.documents("count")) == 19)
    await sensor.stop()

    assert len(listener.documents("heartbeat")) == 3
    counts = listener.documents("count")
    assert all(c["occupancy"] == c["count_in"] - c["count_out"] >= 0 for c in counts)


async def test_modbus_people_counter_changes_over_time() -> None:
    """The simulated counter lets people through as its clock advances, and a poller
    reads the same totals the simulator holds."""
    clock = ManualClock()
    model: DeviceModel = MODELS["people-counter-pc4-modbus"]
    counter = SimulatedPeopleCounter("pc-t9", model, clock, unit_id=3, speed=1.0)
    await counter.start()
    walking = asyncio.create_task(counter.run(interval=2.0))
    await asyncio.sleep(0.01)  # let it start waiting on the clock
    readings: list[Reading] = []

    async def keep(reading: Reading) -> None:
        readings.append(reading)

    async def ignore(device_id: str, online: bool, reason: str) -> None:
        return None

    line = ModbusLine(LineSettings(host="127.0.0.1", port=counter.port))
    poller = ModbusPoller("pc-t9", line, 3, model, clock, keep, ignore)
    try:
        await clock.advance(200)
        reading = await poller.poll_once()
    finally:
        line.close()
        walking.cancel()
        await asyncio.gather(walking, return_exceptions=True)
        await counter.stop()

    assert counter.count_in > 0
    assert reading is not None
    assert reading.values["count_in"] == counter.count_in
    assert reading.values["count_out"] == counter.count_out
    assert reading.values["occupancy"] == counter.occupancy >= 0


# -- the whole hall ----------------------------------------------------------------


@pytest.fixture
async def hall(
    broker: ManagedBroker, unique_topic_root: str, tmp_path: Path
) -> AsyncIterator[SimulatedHall]:
    simulated = SimulatedHall(
        broker_host=broker.host,
        broker_port=broker.port,
        topic_root=unique_topic_root,
        publication_log=tmp_path / "hall.jsonl",
        speed=10.0,
        seed=7,
        clock=ManualClock(),
    )
    yield simulated
    await simulated.stop()


async def test_hall_lists_its_devices_for_the_hub_config(hall: SimulatedHall) -> None:
    """The hall has the agreed mix, and each entry is a valid hub device spec."""
    kinds = [info.kind for info in hall.devices]
    assert kinds.count("ticket_printer") >= 2
    assert kinds.count("rating_pad") >= 6
    assert kinds.count("toilet_alarm") >= 2
    mqtt_occupancy = [
        i for i in hall.devices if i.kind == "occupancy_sensor" and i.protocol == "mqtt"
    ]
    (modbus,) = [info for info in hall.devices if info.protocol == "modbus"]
    assert len(mqtt_occupancy) >= 2
    assert modbus.host == "127.0.0.1" and modbus.port and modbus.unit_id == 1
    for entry in hall.hub_devices_config():
        DeviceSpec.model_validate(entry)
    assert len({info.device_id for info in hall.devices}) == len(hall.devices)
    assert set(hall.alarms) == {"toilet-alarm-1f", "toilet-alarm-2f"}


async def test_hall_runs_and_stops_quiet(
    hall: SimulatedHall, broker: ManagedBroker, listen: Callable[..., Listener]
) -> None:
    """Run on a manual clock: ratings and counts flow, an alarm press arrives, printers
    ask for ticket numbers but print none of their own (there is no hub to answer),
    everything logged was received, and after stop() nothing more is published."""
    listener = listen(broker, "+/+")
    requests = listen(broker, "+/tickets/request")
    await listener.ready()
    await requests.ready()
    clock = hall.clock
    assert isinstance(clock, ManualClock)

    running = asyncio.create_task(hall.run())
    await wait_until(lambda: len(listener.documents("status")) == len(hall.mqtt_devices))
    await asyncio.sleep(0.01)  # let every device start waiting on the clock
    await clock.advance(120)
    hall.alarms["toilet-alarm-2f"].press()
    for device in hall.mqtt_devices.values():
        await device.wait_acknowledged()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await hall.stop()
    logged = {entry["event_id"] for entry in read_publication_log(hall.publication_log.path)}
    await wait_until(lambda: len(listener.messages) >= len(logged))
    settled = len(listener.messages)
    await asyncio.sleep(0.2)

    assert len(listener.messages) == settled
    for message in ("rating", "count", "heartbeat", "call"):
        assert listener.documents(message), message
    assert requests.documents() and not listener.documents("ticket")
    received = {
        device_event_id(m.topic.split("/")[-2], json.loads(m.payload)["msg_id"])
        for m in listener.messages
    }
    assert logged == received
