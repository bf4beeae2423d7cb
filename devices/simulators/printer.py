"""A simulated queue-ticket printer: issues tickets such as ``A005``, runs out of paper."""

from __future__ import annotations

import logging
from typing import Any

from devices.simulators.mqtt_device import SimulatedMqttDevice

logger = logging.getLogger(__name__)

PAPER_LOW_MARK = 30  # tickets left on the roll when the printer warns "low"


class SimulatedTicketPrinter(SimulatedMqttDevice):
    """Prints a ticket every so often, in service categories such as A and B.

    A roll holds a random number of tickets; near its end the printer reports paper
    ``low`` (a retained status), then ``out``, and prints nothing more until
    `refill_paper()`.
    """

    kind = "ticket_printer"

    def __init__(
        self,
        *args: Any,
        categories: tuple[str, ...] = ("A", "B"),
        ticket_interval: float = 20.0,
        green_channel_share: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.categories = categories
        self.ticket_interval = ticket_interval
        self.green_channel_share = green_channel_share
        self.issued: dict[str, int] = dict.fromkeys(categories, 0)
        self.paper_left = self.rng.randint(120, 400)
        self.header = ""

    @property
    def paper(self) -> str:
        """The paper state reported in ``status``: ok, low or out."""
        if self.paper_left <= 0:
            return "out"
        return "low" if self.paper_left <= PAPER_LOW_MARK else "ok"

    async def behave(self) -> None:
        """Issue tickets at random intervals while there is paper."""
        while True:
            await self.pause(self.ticket_interval)
            if self.paper != "out":
                self.issue_ticket()

    def issue_ticket(self, category: str | None = None, *, green_channel: bool = False) -> str:
        """Print the next ticket of `category` (random if None) and return its number."""
        chosen = category or self.rng.choice(self.categories)
        self.issued[chosen] = self.issued.get(chosen, 0) + 1
        ticket = f"{chosen}{self.issued[chosen]:03d}"
        priority = green_channel or self.rng.random() < self.green_channel_share

        fields: dict[str, Any] = {"ticket": ticket, "category": chosen}
        if priority:
            fields["green_channel"] = True
        if self.has_field("ticket", "appointment_id") and self.rng.random() < 0.3:
            fields["appointment_id"] = f"APT{self.rng.randrange(10**8):08d}"
        paper_before = self.paper
        self.publish("ticket", fields)

        self.paper_left -= 1
        if self.paper != paper_before:
            logger.info("simulated printer %s: paper %s", self.device_id, self.paper)
            self.publish("status", self.status_fields(), retain=True)
        return ticket

    def jam(self, detail: str = "cutter") -> str:
        """Report a paper jam (models with a ``jam`` message)."""
        return self.publish("jam", {"detail": detail})

    def clear_jam(self) -> str:
        """Report that a person cleared the jam."""
        return self.publish("jam_cleared", {})

    def refill_paper(self) -> None:
        """Put in a new roll and report paper ok."""
        self.paper_left = self.rng.randint(120, 400)
        self.publish("status", self.status_fields(), retain=True)

    def carry_out(self, command: str, args: dict[str, Any]) -> str | None:
        """Print a ticket on request, or change the header printed on every ticket."""
        if command == "set_header":
            self.header = str(args["text"])
            return None
        if command == "print_ticket":
            if self.paper == "out":
                return "out of paper"
            self.issue_ticket(str(args["category"]))
            return None
        return super().carry_out(command, args)

    def reset_counters(self) -> None:
        """A reboot starts every category's numbering again at 1."""
        super().reset_counters()
        self.issued = dict.fromkeys(self.categories, 0)

    def status_fields(self) -> dict[str, Any]:
        """Online, firmware and the paper state."""
        return {**super().status_fields(), "paper": self.paper}
