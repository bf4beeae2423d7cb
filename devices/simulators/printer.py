"""A simulated queue-ticket printer: asks the hub for each number, runs out of paper."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

import paho.mqtt.client as mqtt

from devices.errors import SimulatorError
from devices.profiles import TicketRequests
from devices.simulators.mqtt_device import QOS_AT_LEAST_ONCE, SimulatedMqttDevice
from hub.tickets.desk import no_delay

logger = logging.getLogger(__name__)

PAPER_LOW_MARK = 30  # tickets left on the roll when the printer warns "low"


class SimulatedTicketPrinter(SimulatedMqttDevice):
    """Prints tickets such as ``A005`` every so often, numbered by the hub.

    For each citizen the printer sends a ticket request with a fresh request id and
    prints only the number the hub answers. Without an answer within the model's
    ``reply_timeout`` it sends the same request id again; after the last attempt it
    shows "please wait" (counted in `please_wait`, the request id kept in
    `unanswered`) and never makes up a number of its own.

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
        self.paper_left = self.rng.randint(120, 400)
        self.header = ""
        self.printed: dict[str, str] = {}  # request id -> the number printed for it
        self.unanswered: list[str] = []  # request ids that ended in "please wait"
        self.please_wait = 0
        self.late_answers = 0
        self.last_answer: dict[str, Any] | None = None  # the hub's latest ticket for it
        self._requests = itertools.count(1)
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pressed: set[asyncio.Task[str | None]] = set()

    @property
    def paper(self) -> str:
        """The paper state reported in ``status``: ok, low or out."""
        if self.paper_left <= 0:
            return "out"
        return "low" if self.paper_left <= PAPER_LOW_MARK else "ok"

    @property
    def ticket_requests(self) -> TicketRequests:
        if self.spec.ticket_requests is None:
            raise SimulatorError(self.device_id, f"model {self.model.model} takes no tickets")
        return self.spec.ticket_requests

    async def behave(self) -> None:
        """A citizen takes a ticket at random intervals while there is paper."""
        while True:
            await self.pause(self.ticket_interval)
            if self.paper != "out":
                await self.take_ticket()

    async def take_ticket(
        self,
        category: str | None = None,
        *,
        green_channel: bool | None = None,
        appointment_code: str | None = None,
    ) -> str | None:
        """Ask the hub for a number and print it; None when the citizen must wait."""
        request_id = f"{self.boot_id}-r{next(self._requests)}"
        request: dict[str, Any] = {"request_id": request_id, "ts": self.clock.wall()}
        if appointment_code is not None:
            request["appointment_code"] = appointment_code
        else:
            request["category"] = category or self.rng.choice(self.categories)
        if green_channel or (
            green_channel is None and self.rng.random() < self.green_channel_share
        ):
            request["green_channel"] = True

        answer = await self._ask(request_id, json.dumps(request).encode("utf-8"))
        if answer is None:
            self.please_wait += 1
            self.unanswered.append(request_id)
            logger.info("simulated printer %s: please wait (no answer)", self.device_id)
            return None
        if "error" in answer:
            logger.info("simulated printer %s: refused: %s", self.device_id, answer["detail"])
            return None
        self.last_answer = answer
        return self.print_ticket(
            answer["ticket"],
            answer["category"],
            request_id=request_id,
            green_channel=bool(answer.get("green_channel")),
        )

    async def _ask(self, request_id: str, payload: bytes) -> dict[str, Any] | None:
        """Send the request, repeating the same id, until the hub answers or attempts end."""
        spec = self.ticket_requests
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        try:
            for _ in range(spec.attempts):
                self._client.publish(self.topic(spec.request), payload, QOS_AT_LEAST_ONCE)
                try:
                    async with asyncio.timeout(spec.reply_timeout):
                        return await asyncio.shield(answer)
                except TimeoutError:
                    continue
            return None
        finally:
            del self._answers[request_id]

    def print_ticket(
        self,
        ticket: str,
        category: str,
        *,
        request_id: str | None = None,
        green_channel: bool = False,
    ) -> str:
        """Print `ticket` and report it (``ticket`` message); returns the number."""
        fields: dict[str, Any] = {"ticket": ticket, "category": category}
        if green_channel:
            fields["green_channel"] = True
        if request_id is not None:
            fields["request_id"] = request_id
            self.printed[request_id] = ticket
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
            # As if a citizen pressed the category: the number still comes from the hub.
            category = str(args["category"])
            self._call_in_loop(lambda: self._press(category))
            return None
        return super().carry_out(command, args)

    def _press(self, category: str) -> None:
        task = asyncio.get_running_loop().create_task(self.take_ticket(category))
        self._pressed.add(task)  # held until done, so the task is not collected early
        task.add_done_callback(self._pressed.discard)

    def status_fields(self) -> dict[str, Any]:
        """Online, firmware and the paper state."""
        return {**super().status_fields(), "paper": self.paper}

    # -- answers (paho's network thread) ---------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = super()._make_client()
        client.on_message = self._on_message
        client.on_socket_open = no_delay  # as a kiosk's firmware would, for a quick answer
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        super()._on_connect(client, userdata, flags, reason, properties)
        if not reason.is_failure and self.spec.ticket_requests is not None:
            client.subscribe(self.topic(self.spec.ticket_requests.reply), QOS_AT_LEAST_ONCE)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # The hub's ticket answers arrive under the command topic too: tell them apart.
        requests = self.spec.ticket_requests
        if requests is not None and message.topic == self.topic(requests.reply):
            self._on_answer(message)
        else:
            self._on_command(client, userdata, message)

    def _on_answer(self, message: mqtt.MQTTMessage) -> None:
        try:
            answer = json.loads(message.payload)
            request_id = str(answer["request_id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("simulated printer %s: unreadable answer", self.device_id)
            return
        self._call_in_loop(lambda: self._settle(request_id, answer))

    def _settle(self, request_id: str, answer: dict[str, Any]) -> None:
        waiting = self._answers.get(request_id)
        if waiting is None:
            self.late_answers += 1  # it already said "please wait", or a duplicate answer
            return
        if not waiting.done():
            waiting.set_result(answer)
