"""A simulated MQTT occupancy sensor over one zone: occupancy follows a random walk."""

from __future__ import annotations

from typing import Any

from devices.simulators.mqtt_device import SimulatedMqttDevice


class SimulatedOccupancySensor(SimulatedMqttDevice):
    """Reports how many people are in its zone every `report_interval` seconds."""

    kind = "occupancy_sensor"

    def __init__(
        self, *args: Any, capacity: int = 120, report_interval: float = 10.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = capacity
        self.report_interval = report_interval
        self.count_in = self.count_out = 0

    @property
    def occupancy(self) -> int:
        """People in the zone now."""
        return self.count_in - self.count_out

    async def behave(self) -> None:
        """Let people come and go, then report, at a steady pace."""
        while True:
            await self.clock.sleep(self.report_interval / self.speed)
            self.walk()
            self.report()

    def walk(self) -> None:
        """One step of the random walk, kept between empty and `capacity`."""
        arrivals = min(self.rng.randint(0, 4), self.capacity - self.occupancy)
        leavers = min(self.rng.randint(0, 4), self.occupancy + arrivals)
        self.count_in += arrivals
        self.count_out += leavers

    def reset_counters(self) -> None:
        """A reboot zeroes the in and out totals."""
        super().reset_counters()
        self.count_in = self.count_out = 0

    def set_occupancy(self, occupancy: int, *, motion: bool | None = None) -> str:
        """Put `occupancy` people in the zone at once (a demo crowd) and report it."""
        self.count_in = self.count_out + max(0, occupancy)
        return self.report(motion=motion)

    def report(self, *, motion: bool | None = None) -> str:
        """Publish the current count (and movement, if the model reports it)."""
        fields: dict[str, Any] = {"occupancy": self.occupancy}
        if motion is not None and self.has_field("count", "motion"):
            fields["motion"] = motion
        if self.has_field("count", "count_in"):
            fields["count_in"] = self.count_in
            fields["count_out"] = self.count_out
        return self.publish("count", fields)
