"""The hub's own MQTT connection to crews' handsets: pages out, acknowledgements in.

Pages go out on ``<crew topic root>/<hub id>/crews/<team>/alerts`` at QoS 1, on a
connection separate from device ingest, so a page never queues behind thousands of
device acknowledgements, and with TCP_NODELAY, so a small page is not held back by
Nagle's algorithm waiting for the broker's delayed ACK (about 40 ms on Linux).

A handset publishes ``{"handset": "hs-7", "alert_id": 12, "action": "ack"}`` (or
``"resolve"``) on ``<crew topic root>/<hub id>/crews/<team>/acks``. The hub listens
with a client of its own (QoS 1) and hands each request to the `AckDesk`, which
refuses a handset that is not in that team.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Coroutine
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.alerts.acks import AckDesk, AckRequest

logger = logging.getLogger(__name__)


class CrewMqtt:
    """Publishes pages and passes handsets' acknowledgements to the desk."""

    def __init__(
        self,
        desk: AckDesk,
        host: str,
        port: int,
        client_id: str,
        crews_prefix: str,
        credentials: tuple[str, str | None] | None = None,
    ) -> None:
        self._desk = desk
        self._host = host
        self._port = port
        self._prefix = crews_prefix
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if credentials is not None:
            self._client.username_pw_set(*credentials)
        self._client.on_connect = self._on_connect
        self._client.on_socket_open = _no_delay
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def wait_listening(self, timeout: float) -> bool:
        """Wait until the broker confirmed the acknowledgement subscription."""
        return self._subscribed.wait(timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue a page at QoS 1; paho sends it, after a reconnect if need be."""
        self._client.publish(topic, payload, qos=1)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(f"{self._prefix}/+/acks", qos=1)
        logger.info("listening for handset acknowledgements on %s/+/acks", self._prefix)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: Any) -> None:
        team = message.topic.removeprefix(self._prefix + "/").split("/", 1)[0]
        raw = bytes(message.payload).decode("utf-8", "replace")
        request = _request(raw)
        if self._loop is None:
            return
        coroutine: Coroutine[Any, Any, Any]
        if request is None:
            bad = AckRequest("mqtt", "?", "ack", 0, raw)
            coroutine = self._desk.refuse(bad, "not an acknowledgement")
        else:
            coroutine = self._desk.handle(request, team_topic=team)
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        future.add_done_callback(_log_failure)


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _request(raw: str) -> AckRequest | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    handset, alert_id, action = body.get("handset"), body.get("alert_id"), body.get("action")
    if not isinstance(handset, str) or not isinstance(alert_id, int) or isinstance(alert_id, bool):
        return None
    if action not in ("ack", "resolve"):
        return None
    return AckRequest("mqtt", handset, action, alert_id, raw)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("handling a handset acknowledgement failed: %s", future.exception())
