"""Commands to devices: Modbus units get a verified register write, the rest MQTT."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from devices.errors import ModbusWriteError
from devices.modbus_poller import ModbusPoller

logger = logging.getLogger(__name__)


class CommandSender(Protocol):
    """Anything that sends a named command with arguments to a device."""

    async def send_command(self, device_id: str, command: str, args: dict[str, Any]) -> None: ...


class CommandRouter:
    """Routes each command to the device's Modbus poller, or else to `fallback`.

    A Modbus command that fails (refused, no reply, reads back another value) is
    logged and counted here; the rule that sent it carries on with its other actions.
    """

    def __init__(
        self, fallback: CommandSender, pollers: Callable[[], dict[str, ModbusPoller]]
    ) -> None:
        self._fallback = fallback
        self._pollers = pollers
        self.verified = 0
        self.failed: dict[str, int] = {}

    async def send_command(self, device_id: str, command: str, args: dict[str, Any]) -> None:
        """Write and read back for a Modbus unit; publish for any other device."""
        poller = self._pollers().get(device_id)
        if poller is None:
            await self._fallback.send_command(device_id, command, args)
            return

        try:
            await poller.command(command, args)
        except ModbusWriteError as exc:
            self.failed[device_id] = self.failed.get(device_id, 0) + 1
            logger.warning("command %s to %s failed: %s", command, device_id, exc.reason)
            return
        self.verified += 1
