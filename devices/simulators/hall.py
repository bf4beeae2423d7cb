"""A simulated service hall: a realistic mix of devices for demos and tests.

Ground floor: two ticket printers, six rating pads at windows W01-W06, a waiting
zone occupancy sensor, a Modbus people counter at the main entrance and an
accessible-toilet alarm; first floor: a second waiting zone and toilet alarm.
`devices` describes each one (id, kind, model, zone, floor and, for Modbus, where
to poll it), so a hub configuration can be written from it; `alarms` lets a demo
press and reset the toilet alarms.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from devices.errors import SimulatorError
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.simulators.modbus_occupancy import SimulatedPeopleCounter
from devices.simulators.mqtt_device import SimulatedMqttDevice
from devices.simulators.occupancy import SimulatedOccupancySensor
from devices.simulators.printer import SimulatedTicketPrinter
from devices.simulators.publication_log import PublicationLog
from devices.simulators.rating_pad import SimulatedRatingPad
from devices.simulators.toilet_alarm import SimulatedToiletAlarm
from hub.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
Device = TypeVar("Device", bound=SimulatedMqttDevice)
PEOPLE_COUNTER_UNIT = 1


@dataclass(frozen=True, slots=True)
class SimulatedDeviceInfo:
    """One device of the simulated hall, as a hub configuration would list it."""

    device_id: str
    kind: str
    model: str
    zone: str
    floor: int
    protocol: Literal["mqtt", "modbus"]
    window: str | None = None
    host: str | None = None
    port: int | None = None
    unit_id: int | None = None

    def as_config(self) -> dict[str, Any]:
        """The entry for the ``devices`` list of a hall configuration file."""
        entry: dict[str, Any] = {
            "id": self.device_id,
            "model": self.model,
            "zone": self.zone,
            "floor": self.floor,
        }
        if self.window is not None:
            entry["window"] = self.window
        if self.protocol == "modbus":
            entry["modbus"] = {"host": self.host, "port": self.port, "unit_id": self.unit_id}
        return entry


class SimulatedHall:
    """Every simulated device of one hall, started, run and stopped together."""

    def __init__(
        self,
        *,
        broker_port: int,
        publication_log: Path,
        broker_host: str = LOOPBACK,
        topic_root: str = "hall",
        speed: float = 1.0,
        seed: int = 0,
        clock: Clock | None = None,
        heartbeat_interval: float = 30.0,
        modbus_host: str = LOOPBACK,
        modbus_port: int = 0,
        models_dir: Path | None = None,
    ) -> None:
        if speed <= 0:
            raise SimulatorError("", f"speed must be positive, not {speed}")
        self.clock: Clock = clock or SystemClock()
        self.publication_log = PublicationLog(publication_log)
        self._models = load_models(
            *(folder for folder in (shipped_models_dir(), models_dir) if folder)
        )
        self._seed = seed
        self._common: dict[str, Any] = {
            "clock": self.clock,
            "publication_log": self.publication_log,
            "host": broker_host,
            "port": broker_port,
            "topic_root": topic_root,
            "heartbeat_interval": heartbeat_interval,
            "speed": speed,
        }
        self.devices: list[SimulatedDeviceInfo] = []
        self.mqtt_devices: dict[str, SimulatedMqttDevice] = {}
        self._build_mqtt_devices()
        self.people_counter = self._build_people_counter(modbus_host, modbus_port, speed)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # -- what is in the hall ---------------------------------------------------------

    @property
    def alarms(self) -> dict[str, SimulatedToiletAlarm]:
        """The toilet alarms, by device id, for a demo to press and reset."""
        return _of_kind(self.mqtt_devices, SimulatedToiletAlarm)

    @property
    def printers(self) -> dict[str, SimulatedTicketPrinter]:
        """The ticket printers, by device id."""
        return _of_kind(self.mqtt_devices, SimulatedTicketPrinter)

    @property
    def rating_pads(self) -> dict[str, SimulatedRatingPad]:
        """The rating pads, by device id."""
        return _of_kind(self.mqtt_devices, SimulatedRatingPad)

    @property
    def occupancy_sensors(self) -> dict[str, SimulatedOccupancySensor]:
        """The MQTT occupancy sensors, by device id."""
        return _of_kind(self.mqtt_devices, SimulatedOccupancySensor)

    def hub_devices_config(self) -> list[dict[str, Any]]:
        """The ``devices`` section of a hall configuration for this hall."""
        return [info.as_config() for info in self.devices]

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the people counter and connect every MQTT device."""
        if self._started:
            return
        await self.people_counter.start()
        try:
            await asyncio.gather(*(device.start() for device in self.mqtt_devices.values()))
        except BaseException:
            await self.stop()
            raise
        self._started = True
        logger.info(
            "simulated hall up: %d MQTT devices, people counter on port %d",
            len(self.mqtt_devices),
            self.people_counter.port,
        )

    async def run(self) -> None:
        """Start if needed, then let every device behave until cancelled."""
        await self.start()
        self._tasks = [
            asyncio.create_task(device.run(), name=f"simulated-{device_id}")
            for device_id, device in self.mqtt_devices.items()
        ]
        self._tasks.append(
            asyncio.create_task(self.people_counter.run(), name="simulated-people-counter")
        )
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self._cancel_tasks()

    async def stop(self) -> None:
        """Stop every device; nothing is published after this returns."""
        await self._cancel_tasks()
        await asyncio.gather(*(device.stop() for device in self.mqtt_devices.values()))
        await self.people_counter.stop()
        self.publication_log.close()
        self._started = False
        logger.info("simulated hall stopped")

    # -- building --------------------------------------------------------------------

    def _model(self, name: str, kind: str) -> DeviceModel:
        model = self._models.get(name)
        if model is None or model.kind != kind:
            raise SimulatorError("", f"no {kind} model named {name!r} in firmware_configs")
        return model

    def _add_mqtt(
        self,
        device: SimulatedMqttDevice,
        zone: str,
        floor: int,
        window: str | None = None,
    ) -> None:
        self.mqtt_devices[device.device_id] = device
        self.devices.append(
            SimulatedDeviceInfo(
                device.device_id, device.kind, device.model.model, zone, floor, "mqtt", window
            )
        )

    def _rng(self, device_id: str) -> random.Random:
        return random.Random(f"{self._seed}/{device_id}")

    def _build_mqtt_devices(self) -> None:
        for device_id, model_name in (
            ("printer-1f-01", "ticket-printer-tp80"),
            ("printer-1f-02", "ticket-kiosk-tk20"),
        ):
            model = self._model(model_name, "ticket_printer")
            printer = SimulatedTicketPrinter(
                device_id, model, rng=self._rng(device_id), **self._common
            )
            self._add_mqtt(printer, "1F entrance", 1)

        for number in range(1, 7):
            window = f"W{number:02d}"
            device_id = f"rating-pad-{window.lower()}"
            model_name = "rating-pad-rp5" if number <= 4 else "rating-tablet-rt10"
            pad = SimulatedRatingPad(
                device_id,
                self._model(model_name, "rating_pad"),
                window=window,
                rng=self._rng(device_id),
                **self._common,
            )
            self._add_mqtt(pad, "1F service windows", 1, window)

        for device_id, model_name, zone, floor in (
            ("toilet-alarm-1f", "toilet-alarm-ta1", "1F accessible toilet", 1),
            ("toilet-alarm-2f", "toilet-alarm-wireless-ta2", "2F accessible toilet", 2),
        ):
            model = self._model(model_name, "toilet_alarm")
            alarm = SimulatedToiletAlarm(device_id, model, rng=self._rng(device_id), **self._common)
            self._add_mqtt(alarm, zone, floor)

        for device_id, zone, floor in (
            ("occupancy-1f-waiting", "1F waiting zone", 1),
            ("occupancy-2f-waiting", "2F waiting zone", 2),
        ):
            model = self._model("occupancy-sensor-os1", "occupancy_sensor")
            sensor = SimulatedOccupancySensor(
                device_id, model, rng=self._rng(device_id), **self._common
            )
            self._add_mqtt(sensor, zone, floor)

    def _build_people_counter(self, host: str, port: int, speed: float) -> SimulatedPeopleCounter:
        device_id = "people-counter-1f-entrance"
        model = self._model("people-counter-pc4-modbus", "occupancy_sensor")
        port = port or _free_port(host)
        counter = SimulatedPeopleCounter(
            device_id,
            model,
            self.clock,
            host=host,
            port=port,
            unit_id=PEOPLE_COUNTER_UNIT,
            speed=speed,
            rng=self._rng(device_id),
        )
        self.devices.append(
            SimulatedDeviceInfo(
                device_id,
                model.kind,
                model.model,
                "1F main entrance",
                1,
                "modbus",
                host=host,
                port=port,
                unit_id=PEOPLE_COUNTER_UNIT,
            )
        )
        return counter

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _of_kind(devices: dict[str, SimulatedMqttDevice], kind: type[Device]) -> dict[str, Device]:
    return {device_id: device for device_id, device in devices.items() if isinstance(device, kind)}


def _free_port(host: str) -> int:
    """A port nothing listens on right now (the counter binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port
