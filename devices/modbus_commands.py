"""Commands to devices: Modbus units get a verified register write, the rest MQTT."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from devices.commands import RULES_ACTOR, DeviceCommands
from devices.errors import CommandError, UnknownDeviceError
from devices.modbus_poller import ModbusPoller

logger = logging.getLogger(__name__)


class CommandRouter:
    """Routes each command to the device's Modbus poller, or else over MQTT.

    Either way the command is tracked in `DeviceCommands` with a request id: a
    Modbus command is settled by its verified write, an MQTT one by the device's
    acknowledgement. Rules and the console both send through here.
    """

    def __init__(
        self, tracked: DeviceCommands, pollers: Callable[[], dict[str, ModbusPoller]]
    ) -> None:
        self._tracked = tracked
        self._pollers = pollers

    async def send(
        self, device_id: str, command: str, args: dict[str, Any], sent_by: str
    ) -> dict[str, Any]:
        """Send one command; return its record. CommandError if it cannot be sent."""
        poller = self._pollers().get(device_id)
        if poller is None:
            return await self._tracked.send(device_id, command, args, sent_by)

        register, value = poller.resolve_command(command, args)
        return await self._tracked.carry_out(
            device_id, command, args, sent_by, lambda: poller.write(register, value)
        )

    async def send_command(self, device_id: str, command: str, args: dict[str, Any]) -> None:
        """A rule's command: tracked like any other; one that cannot be sent is logged."""
        try:
            record = await self.send(device_id, command, args, RULES_ACTOR)
        except (CommandError, UnknownDeviceError) as exc:
            logger.error("a rule's command could not be sent: %s", exc)
            return
        if record.get("state") == "failed":
            logger.warning(
                "a rule's command %s to %s failed: %s", command, device_id, record["detail"]
            )
