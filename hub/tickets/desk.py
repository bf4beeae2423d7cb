"""The ticket desk: printers ask for numbers over MQTT and hear the hub's answer.

A printer publishes ``{"request_id": ..., "category": "A"}`` on the request topic
its device model names (``<topic root>/<device id>/tickets/request``) and prints
only the number the hub answers on its reply topic. The answer goes out after the
ticket is committed; a repeated request id gets the same ticket back, so a printer
that retries after a lost answer never prints two numbers.

The desk has its own MQTT connection with a clean session: requests sent while
the hub was down are not replayed to it later, because their printers have told
the citizen to wait by then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub import metrics
from hub.clock import Clock
from hub.errors import JournalError
from hub.journal import Journal, keep_dead_letter
from hub.tickets.errors import TicketError
from hub.tickets.service import TicketService
from hub.tickets.store import TicketRequest

if TYPE_CHECKING:
    from devices.mqtt_ingest import BrokerSettings
    from devices.registry import Registry

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024


class BadRequest(Exception):
    """A ticket request the desk cannot read; `reason` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class TicketDesk:
    """Answers printers' ticket requests from the ticket service."""

    def __init__(
        self,
        connection: BrokerSettings,
        registry: Registry,
        tickets: TicketService,
        journal: Journal,
        clock: Clock,
    ) -> None:
        self._connection = connection
        self._registry = registry
        self._tickets = tickets
        self._journal = journal
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = threading.Event()
        self.rejected = 0
        self._client = self._make_client()

    def request_filters(self) -> list[str]:
        """One topic filter per distinct request topic among the hall's printers."""
        suffixes = {
            device.model.mqtt.ticket_requests.request
            for device in self._registry.all()
            if device.model.mqtt is not None and device.model.mqtt.ticket_requests is not None
        }
        return [f"{self._connection.topic_root}/+/{suffix}" for suffix in sorted(suffixes)]

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after a loss."""
        self._loop = asyncio.get_running_loop()
        if self.request_filters() and not self._tickets.settings.categories:
            logger.warning(
                "the hall has ticket printers but no tickets.categories: "
                "every ticket request will be refused"
            )
        self._client.connect_async(
            self._connection.host, self._connection.port, keepalive=self._connection.keepalive
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._client._reset_sockets(sockpair_only=True)

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the broker confirmed the request subscriptions."""
        return self._subscribed.wait(timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 (announcements share the desk's connection)."""
        self._client.publish(topic, payload, qos=1)

    # -- paho callbacks (network thread) ---------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._connection.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if self._connection.username is not None:
            client.username_pw_set(self._connection.username, self._connection.password)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_args: self._subscribed.set()
        client.on_message = self._on_message
        client.on_socket_open = no_delay
        return client

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            logger.warning("ticket desk: broker refused the connection: %s", reason)
            return
        filters = self.request_filters()
        for topic_filter in filters:
            client.subscribe(topic_filter, qos=1)
        if not filters:
            self._subscribed.set()
        logger.info("ticket desk listening on %s", ", ".join(filters) or "nothing")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        topic = message._topic.decode("utf-8", errors="replace")
        payload = bytes(message.payload)
        answering = asyncio.run_coroutine_threadsafe(self._answer(topic, payload), loop)
        answering.add_done_callback(_report_failure)

    # -- answering (event loop) ------------------------------------------------------

    async def _answer(self, topic: str, payload: bytes) -> None:
        try:
            printer, reply_topic = self._printer_of(topic)
            request = parse_request(payload)
        except BadRequest as exc:
            await self._reject(topic, payload, exc)
            return

        try:
            ticket = await self._tickets.issue(printer, request)
        except TicketError as exc:
            logger.info("ticket request %s from %s refused: %s", request.request_id, printer, exc)
            self._reply(
                reply_topic,
                {"request_id": request.request_id, "error": exc.reason, "detail": exc.detail},
            )
            return
        except JournalError as exc:
            # No answer: the printer retries the same request id, or asks the citizen to wait.
            logger.error("ticket for %s not committed: %s", printer, exc)
            return
        self._reply(reply_topic, {"request_id": request.request_id, **ticket})

    def _printer_of(self, topic: str) -> tuple[str, str]:
        root = self._connection.topic_root + "/"
        device_id, _, suffix = topic.removeprefix(root).partition("/")
        device = self._registry.get(device_id)
        spec = device.model.mqtt if device is not None else None
        if spec is None or spec.ticket_requests is None or spec.ticket_requests.request != suffix:
            raise BadRequest("unknown_printer", f"no ticket printer {device_id!r} in this hall")
        return device_id, f"{root}{device_id}/{spec.ticket_requests.reply}"

    def _reply(self, topic: str, body: dict[str, Any]) -> None:
        self._client.publish(topic, json.dumps(body, ensure_ascii=False).encode("utf-8"), qos=1)

    async def _reject(self, topic: str, payload: bytes, problem: BadRequest) -> None:
        """Count and keep a request the desk cannot read; it never gets a number."""
        self.rejected += 1
        metrics.DEAD_LETTERS.labels(problem.reason).inc()
        logger.info("ticket request on %s refused: %s", topic[:200], problem)
        received_at = self._clock.wall()

        def keep(conn: Any) -> None:
            keep_dead_letter(
                conn, received_at, f"mqtt:{topic[:500]}", problem.reason, problem.detail, payload
            )

        try:
            await self._journal.write(keep)
        except JournalError as exc:
            logger.error("could not keep refused ticket request: %s", exc)


def _report_failure(answering: concurrent.futures.Future[None]) -> None:
    """A fault while answering is logged; the desk goes on with the next request."""
    if not answering.cancelled() and answering.exception() is not None:
        logger.error("ticket desk failed on a request", exc_info=answering.exception())


def no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Send each packet at once (no Nagle): a PUBACK followed by the answer would
    otherwise wait for the broker's delayed TCP acknowledgement, about 40 ms."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def parse_request(payload: bytes) -> TicketRequest:
    """Read a printer's request, or raise `BadRequest` naming what is wrong."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise BadRequest("oversize", f"{len(payload)} bytes > {MAX_REQUEST_BYTES}")
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("not_json", str(exc)[:200]) from exc
    if not isinstance(document, dict):
        raise BadRequest("not_object", "a ticket request is a JSON object")

    request_id = document.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 64:
        raise BadRequest("bad_request_id", "request_id must be a string of 1 to 64 characters")
    category = _optional_text(document, "category", 8)
    code = _optional_text(document, "appointment_code", 64)
    if category is None and code is None:
        raise BadRequest("no_category", "give a category or an appointment_code")
    green = document.get("green_channel", False)
    if not isinstance(green, bool):
        raise BadRequest("bad_green_channel", "green_channel must be true or false")
    return TicketRequest(request_id, category, green, code)


def _optional_text(document: dict[str, Any], name: str, longest: int) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= longest:
        raise BadRequest(f"bad_{name}", f"{name} must be a string of 1 to {longest} characters")
    return value


def desk_connection(ingest: BrokerSettings) -> BrokerSettings:
    """The desk's connection: the ingest's broker and credentials, its own client id."""
    return dataclasses.replace(ingest, client_id=f"{ingest.client_id}-tickets")
