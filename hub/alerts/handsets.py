"""Acknowledgements published by crews' handsets on their team's MQTT topic.

A handset publishes ``{"handset": "hs-7", "alert_id": 12, "action": "ack"}`` (or
``"resolve"``) on ``<crew topic root>/<hub id>/crews/<team>/acks``. The hub listens
with a client of its own (QoS 1) and hands each request to the `AckDesk`, which
refuses a handset that is not in that team.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.alerts.acks import AckDesk, AckRequest

logger = logging.getLogger(__name__)


class HandsetAcks:
    """Subscribes to every team's ack topic and passes requests to the desk."""

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
        self._client.on_message = self._on_message

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

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
