"""A simulated accessible-toilet emergency alarm: `press()` calls, `reset()` clears.

Like the real one, the call latches until reset at the spot; the latch is part of
the (retained) status, so a hub that restarts learns of an open call from state,
never by mistaking a replayed message for a fresh press.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from devices.simulators.mqtt_device import SimulatedMqttDevice

logger = logging.getLogger(__name__)

BATTERY_DRAIN_EVERY = 20  # heartbeats per percent of battery, for battery models


class SimulatedToiletAlarm(SimulatedMqttDevice):
    """Presses come from the demo or test; the alarm does nothing on its own."""

    kind = "toilet_alarm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latched = False
        self.lamp = "off"
        self.battery = self.rng.randint(40, 100)
        self._heartbeats = 0

    def press(self, source: Literal["button", "cord"] = "cord") -> str:
        """Someone pulls the cord or presses the button; returns the call's event id."""
        self.latched = True
        fields = {"source": source} if self.has_field("call", "source") else {}
        event_id = self.publish("call", fields)
        self.publish("status", self.status_fields(), retain=True)
        logger.info("simulated alarm %s: call (%s)", self.device_id, source)
        return event_id

    def reset(self) -> str:
        """The person who came resets the alarm at the spot; returns the event id."""
        self.latched = False
        event_id = self.publish("reset")
        self.publish("status", self.status_fields(), retain=True)
        logger.info("simulated alarm %s: reset", self.device_id)
        return event_id

    def carry_out(self, command: str, args: dict[str, Any]) -> str | None:
        """Switch the lamp outside the door, as the hub's rules ask."""
        if command == "lamp":
            self.lamp = str(args["state"])
            return None
        return super().carry_out(command, args)

    def reset_counters(self) -> None:
        """A reboot clears the latch: the call is forgotten at the spot."""
        super().reset_counters()
        self.latched = False

    def status_fields(self) -> dict[str, Any]:
        """Online, firmware, the latch and (for battery models) the battery."""
        fields = {**super().status_fields(), "latched": self.latched}
        if self.has_field("status", "battery"):
            fields["battery"] = self.battery
        return fields

    def heartbeat_fields(self) -> dict[str, Any]:
        """The battery, slowly draining, for models that report one."""
        if not self.has_field("heartbeat", "battery"):
            return {}
        self._heartbeats += 1
        if self._heartbeats % BATTERY_DRAIN_EVERY == 0:
            self.battery = max(0, self.battery - 1)
        return {"battery": self.battery}
