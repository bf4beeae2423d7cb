"""A simulated rating pad at a service window: citizens rate on five levels."""

from __future__ import annotations

from typing import Any

from devices.simulators.mqtt_device import SimulatedMqttDevice

# Share of each level, best first; the last two are bad ratings (差评). Roughly what
# halls publish: most citizens are very satisfied, a few percent are not.
LEVEL_WEIGHTS: dict[str, int] = {
    "非常满意": 80,
    "满意": 12,
    "基本满意": 4,
    "不满意": 3,
    "非常不满意": 1,
}
BAD_LEVELS = frozenset({"不满意", "非常不满意"})
COMPLAINTS = ("等候时间太长", "材料要求没有一次说清", "工作人员态度不好")


class SimulatedRatingPad(SimulatedMqttDevice):
    """Sends a rating every so often for the window it belongs to."""

    kind = "rating_pad"

    def __init__(self, *args: Any, window: str, rating_interval: float = 45.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.window = window
        self.rating_interval = rating_interval
        self.prompted_case: str | None = None

    async def behave(self) -> None:
        """Rate at random intervals, with levels drawn by `LEVEL_WEIGHTS`."""
        while True:
            await self.pause(self.rating_interval)
            self.rate()

    def rate(
        self, level: str | None = None, *, ticket: str | None = None, case_no: str | None = None
    ) -> str:
        """Publish one rating (a weighted random level if None); returns the event id."""
        chosen = level or self.rng.choices(list(LEVEL_WEIGHTS), list(LEVEL_WEIGHTS.values()))[0]
        fields: dict[str, Any] = {"level": chosen, "window": self.window}
        fields["ticket"] = ticket or f"{self.rng.choice('AB')}{self.rng.randint(1, 300):03d}"
        if case_no or self.rng.random() < 0.5:
            fields["case_no"] = case_no or f"C{self.rng.randrange(10**10):010d}"
        if chosen in BAD_LEVELS and self.has_field("rating", "comment"):
            fields["comment"] = self.rng.choice(COMPLAINTS)
        return self.publish("rating", fields)

    def carry_out(self, command: str, args: dict[str, Any]) -> str | None:
        """Light up and ask for a rating of a case, if asked for this pad's window."""
        if command != "prompt_rating":
            return super().carry_out(command, args)
        if args["window"] != self.window:
            return f"this pad serves window {self.window}"
        self.prompted_case = str(args.get("case_no") or "")
        return None
