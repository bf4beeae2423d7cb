"""Simulated hall devices that speak the same MQTT and Modbus a real device does."""

from devices.simulators.hall import SimulatedDeviceInfo, SimulatedHall
from devices.simulators.modbus_occupancy import SimulatedPeopleCounter
from devices.simulators.mqtt_device import SimulatedMqttDevice
from devices.simulators.occupancy import SimulatedOccupancySensor
from devices.simulators.printer import SimulatedTicketPrinter
from devices.simulators.publication_log import PublicationLog, read_publication_log
from devices.simulators.rating_pad import SimulatedRatingPad
from devices.simulators.toilet_alarm import SimulatedToiletAlarm

__all__ = [
    "PublicationLog",
    "SimulatedDeviceInfo",
    "SimulatedHall",
    "SimulatedMqttDevice",
    "SimulatedOccupancySensor",
    "SimulatedPeopleCounter",
    "SimulatedRatingPad",
    "SimulatedTicketPrinter",
    "SimulatedToiletAlarm",
    "read_publication_log",
]
