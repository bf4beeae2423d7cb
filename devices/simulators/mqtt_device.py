"""A simulated MQTT device: the base every simulated device kind builds on.

It behaves as hallhub expects a real device to:

* connects with its device id as MQTT client id (MQTT 3.1.1), publishes at QoS 1 on
  ``<topic root>/<device id>/<message>``, every payload checked against its model;
* every payload carries ``msg_id`` (boot id + counter, so ids never repeat across
  simulator restarts) and ``ts`` (the device's clock);
* on each connect publishes ``status`` ``{"online": true}`` retained, and leaves
  ``{"online": false}`` retained as its last will, which the broker publishes if the
  device vanishes without saying goodbye;
* sends a ``heartbeat`` every `heartbeat_interval` seconds;
* carries out the commands its model declares, arriving on
  ``<topic root>/<device id>/command/<name>``, and answers each with a
  ``command_ack`` naming the command's ``request_id``.

A message goes into the publication log only when the broker's PUBACK for it
arrives (paho's ``on_publish``), so the log is exactly what the broker accepted.

paho runs its network loop in its own thread; its callbacks only update guarded
state and hand signals to the asyncio loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from devices.errors import SimulatorError
from devices.payloads import RejectedMessage, decode_payload
from devices.profiles import DeviceModel, MqttSpec
from devices.simulators.publication_log import PublicationLog
from hub.clock import Clock
from hub.events import device_event_id

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
QOS_AT_LEAST_ONCE = 1


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message handed to paho and not yet acknowledged by the broker."""

    event_id: str
    message: str


class SimulatedMqttDevice:
    """One simulated device speaking MQTT; subclasses add the kind's behaviour."""

    kind: ClassVar[str] = ""

    def __init__(
        self,
        device_id: str,
        model: DeviceModel,
        *,
        clock: Clock,
        publication_log: PublicationLog,
        port: int,
        host: str = LOOPBACK,
        topic_root: str = "hall",
        heartbeat_interval: float = 30.0,
        speed: float = 1.0,
        rng: random.Random | None = None,
        keepalive: int = 30,
    ) -> None:
        if model.mqtt is None:
            raise SimulatorError(device_id, f"model {model.model} is not an MQTT model")
        if self.kind and model.kind != self.kind:
            raise SimulatorError(device_id, f"model {model.model} is a {model.kind}")
        self.device_id = device_id
        self.model = model
        self.spec: MqttSpec = model.mqtt
        self.host = host
        self.port = port
        self.topic_root = topic_root
        self.heartbeat_interval = heartbeat_interval
        self.speed = speed
        self.rng = rng or random.Random()
        self.clock = clock
        self.boot_id = uuid.uuid4().hex[:12]  # fresh per start: msg ids never repeat
        self.acknowledged = 0
        self._keepalive = keepalive
        self._log = publication_log
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, SentMessage] = {}
        self._early_acks: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._drained = asyncio.Event()
        self._stopped = False
        self.silent = False
        self.commands_received: list[tuple[str, dict[str, Any]]] = []
        self._client = self._make_client()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Connect to the broker and wait for the CONNACK."""
        self._loop = asyncio.get_running_loop()
        self._drained.set()
        self._set_will()
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self._client.loop_start()
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError as exc:
            self._client.loop_stop()
            raise SimulatorError(
                self.device_id, f"no CONNACK from {self.host}:{self.port} within {timeout}s"
            ) from exc

    async def run(self) -> None:
        """Send heartbeats and behave as the kind does, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._heartbeat_loop(), name=f"{self.device_id}-heartbeat")
            tasks.create_task(self.behave(), name=f"{self.device_id}-behaviour")

    async def behave(self) -> None:
        """What the device does on its own; the base device only waits."""
        await asyncio.Event().wait()

    async def stop(self, timeout: float = 5.0, *, announce_offline: bool = False) -> None:
        """Stop publishing, await outstanding PUBACKs, disconnect cleanly.

        A clean DISCONNECT does not fire the will, so the retained status stays
        online unless `announce_offline` publishes ``{"online": false}`` first.
        """
        if self._stopped:
            return
        if self._loop is None:  # never started: nothing was sent, nothing to wait for
            self._stopped = True
            return
        if announce_offline and self.connected:
            self.publish("status", {**self.status_fields(), "online": False}, retain=True)
        try:
            await self.wait_acknowledged(timeout)
        except SimulatorError as exc:
            logger.warning("%s; they stay out of the publication log", exc)

        self._stopped = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        logger.info("simulated %s %s stopped", self.kind or "device", self.device_id)

    async def cut_power(self) -> None:
        """Vanish without a DISCONNECT, as a device losing power does; the will fires."""
        if self._stopped:
            return
        self._stopped = True
        # Stop paho's thread first, so it cannot notice the closed socket and reconnect.
        await asyncio.to_thread(self._client.loop_stop)
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        self._connected.clear()
        logger.info("simulated %s %s lost power", self.kind or "device", self.device_id)

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the current connection."""
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        """Messages sent (or queued) that the broker has not acknowledged yet."""
        with self._lock:
            return len(self._pending)

    async def wait_acknowledged(self, timeout: float = 5.0) -> None:
        """Wait until every message sent so far is acknowledged, or raise."""
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError as exc:
            raise SimulatorError(
                self.device_id, f"{self.pending} messages not acknowledged within {timeout}s"
            ) from exc

    # -- publishing ------------------------------------------------------------------

    def topic(self, message: str) -> str:
        """The topic `message` is published on."""
        return f"{self.topic_root}/{self.device_id}/{message}"

    def publish(
        self, message: str, fields: dict[str, Any] | None = None, *, retain: bool = False
    ) -> str:
        """Publish one message at QoS 1 and return its event id."""
        if self._stopped:
            raise SimulatorError(self.device_id, f"stopped; cannot publish {message}")
        if self.silent:
            logger.debug("%s is silent; %s not sent", self.device_id, message)
            return ""
        msg_id = self._next_msg_id()
        payload = self._payload(message, msg_id, fields or {})
        sent = SentMessage(device_event_id(self.device_id, msg_id), message)

        info = self._client.publish(self.topic(message), payload, QOS_AT_LEAST_ONCE, retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise SimulatorError(self.device_id, f"paho refused {message}: {info.rc.name}")

        with self._lock:
            acknowledged_already = info.mid in self._early_acks
            self._early_acks.discard(info.mid)
            if not acknowledged_already:
                self._pending[info.mid] = sent
        if acknowledged_already:
            self._record_acknowledged(sent)
        self._signal_drained()
        logger.debug("%s published %s (%s)", self.device_id, message, msg_id)
        return sent.event_id

    def publish_raw(self, message: str, payload: bytes) -> None:
        """Send `payload` on `message`'s topic unchecked, as broken firmware might."""
        self._client.publish(self.topic(message), payload, QOS_AT_LEAST_ONCE)

    def drop_connection(self) -> None:
        """Break the TCP connection without a DISCONNECT; paho reconnects by itself.

        The broker sees the link die, so it publishes the device's last will.
        """
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def reset_counters(self) -> None:
        """What a reboot forgets: the message counter, under a new boot id; kinds add theirs."""
        with self._lock:
            self.boot_id = uuid.uuid4().hex[:12]
            self._counter = itertools.count(1)

    def carry_out(self, command: str, args: dict[str, Any]) -> str | None:
        """Do `command`; return None when done, or why it was refused. Kinds override."""
        return f"{command} is not supported by this simulator"

    def has_field(self, message: str, field: str) -> bool:
        """Whether this device's model declares `field` on `message`."""
        declared = self.spec.messages.get(message)
        return declared is not None and field in declared.fields

    def status_fields(self) -> dict[str, Any]:
        """The fields of a ``status`` message; kinds add theirs."""
        fields: dict[str, Any] = {"online": True}
        if self.has_field("status", "firmware") and self.model.firmware:
            fields["firmware"] = self.model.firmware
        if self.has_field("status", "heartbeat_interval"):
            fields["heartbeat_interval"] = max(1, round(self.heartbeat_interval))
        return fields

    def heartbeat_fields(self) -> dict[str, Any]:
        """The fields of a ``heartbeat`` message; kinds add theirs."""
        return {}

    async def pause(self, mean_seconds: float) -> None:
        """Wait a random time averaging `mean_seconds`, divided by `speed`."""
        await self.clock.sleep(self.rng.expovariate(self.speed / mean_seconds))

    # -- internals -------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_command
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_queued_messages_set(10_000)
        return client

    def _next_msg_id(self) -> str:
        with self._lock:
            return f"{self.boot_id}-{next(self._counter)}"

    def _payload(self, message: str, msg_id: str, fields: dict[str, Any]) -> bytes:
        document = {"msg_id": msg_id, "ts": self.clock.wall(), **fields}
        payload = json.dumps(document, ensure_ascii=False).encode("utf-8")
        try:
            decode_payload(self.model, message, payload)
        except RejectedMessage as exc:
            raise SimulatorError(self.device_id, f"{message} breaks its model: {exc}") from exc
        return payload

    def _set_will(self) -> None:
        # A fresh msg_id for every connection, so each outage is its own event.
        payload = self._payload("status", self._next_msg_id(), {"online": False})
        self._client.will_set(self.topic("status"), payload, QOS_AT_LEAST_ONCE, retain=True)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.clock.sleep(self.heartbeat_interval)
            self.publish("heartbeat", self.heartbeat_fields())

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            logger.warning("%s: broker refused the connection: %s", self.device_id, reason)
            return
        if self._stopped:
            return
        logger.info("simulated %s %s connected", self.kind or "device", self.device_id)
        if self.spec.commands:
            client.subscribe(f"{self.topic('command')}/+", QOS_AT_LEAST_ONCE)
        self.publish("status", self.status_fields(), retain=True)
        self._call_in_loop(self._connected.set)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._call_in_loop(self._connected.clear)
        if self._stopped:
            return
        logger.warning("simulated device %s disconnected: %s", self.device_id, reason)
        self._set_will()  # paho sends it with the next automatic reconnect

    def _on_command(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        command = message.topic.rsplit("/", 1)[-1]
        try:
            body = json.loads(message.payload)
            request_id = str(body.pop("request_id"))
        except (ValueError, KeyError, AttributeError, TypeError):
            logger.warning("%s: unreadable command on %s", self.device_id, message.topic)
            return
        self.commands_received.append((command, body))
        try:
            refusal = self.carry_out(command, body)
        except Exception as exc:  # a simulator bug must not end paho's network thread
            logger.exception("%s failed to carry out %s", self.device_id, command)
            refusal = f"failed: {exc!r}"[:200]
        ack: dict[str, Any] = {"request_id": request_id, "result": "done"}
        if refusal is not None:
            ack.update(result="refused", detail=refusal[:200])
        if not self._stopped:
            self.publish("command_ack", ack)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            logger.warning("%s: broker refused message %d: %s", self.device_id, mid, reason)
            return
        with self._lock:
            sent = self._pending.pop(mid, None)
            if sent is None:  # PUBACK overtook publish() returning; publish() records it
                self._early_acks.add(mid)
                return
        self._record_acknowledged(sent)
        self._signal_drained()

    def _record_acknowledged(self, sent: SentMessage) -> None:
        self._log.record(sent.event_id, self.device_id, sent.message, self.clock.wall())
        with self._lock:
            self.acknowledged += 1

    def _signal_drained(self) -> None:
        self._call_in_loop(self._update_drained)

    def _update_drained(self) -> None:
        with self._lock:
            empty = not self._pending
        if empty:
            self._drained.set()
        else:
            self._drained.clear()

    def _call_in_loop(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback)
