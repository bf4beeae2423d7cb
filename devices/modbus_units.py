"""The hub's Modbus units: one poller per commissioned unit, on shared lines."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from devices.modbus_derived import OpenHours
from devices.modbus_line import LineSettings, ModbusLines
from devices.modbus_poller import HealthCallback, ModbusPoller, ReadingCallback
from devices.registry import DeviceState
from hub.clock import Clock
from hub.config import ModbusAddress

logger = logging.getLogger(__name__)


def line_settings(address: ModbusAddress) -> LineSettings:
    """The line a configured unit sits on."""
    if address.serial_port is not None and not address.serial_port.startswith("/dev/serial/by-id/"):
        logger.info(
            "serial port %s is not a /dev/serial/by-id/ name; it may change when the "
            "adapter is plugged in again",
            address.serial_port,
        )
    return LineSettings(
        host=address.host,
        port=address.port,
        serial_port=address.serial_port,
        framing="rtu" if address.serial_port is not None else address.framing,
        baudrate=address.baudrate,
        parity=address.parity,
        stopbits=address.stopbits,
        echo=address.echo,
    )


def modbus_pollers(
    devices: Iterable[DeviceState],
    lines: ModbusLines,
    clock: Clock,
    on_reading: ReadingCallback,
    on_health: HealthCallback,
    *,
    is_open: OpenHours | None = None,
) -> dict[str, ModbusPoller]:
    """A poller for every Modbus device with an address, by device id."""
    pollers: dict[str, ModbusPoller] = {}
    for device in devices:
        address = device.spec.modbus
        if device.model.protocol != "modbus" or address is None:
            continue
        pollers[device.device_id] = ModbusPoller(
            device.device_id,
            lines.line_for(line_settings(address)),
            address.unit_id,
            device.model,
            clock,
            on_reading,
            on_health,
            is_open=is_open,
        )
    return pollers
