"""A stand-in for ThingsBoard's MQTT side, so the IoT Gateway can run against a plain broker.

On connect the gateway asks ThingsBoard for its session limits with a client-side
RPC (``getSessionLimits`` on ``v1/devices/me/rpc/request/<id>``) and waits for the
reply on ``v1/devices/me/rpc/response/<id>``. A plain broker never answers, so
this stand-in does: no rate limits, 100 messages in flight. It also counts what
the gateway forwards on ``v1/gateway/telemetry``, by the ``msg_id`` each reading
carries, so the bench can compare delivered with published.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt

RPC_REQUESTS = "v1/devices/me/rpc/request/+"
RPC_RESPONSES = "v1/devices/me/rpc/response/"
GATEWAY_TELEMETRY = "v1/gateway/telemetry"
SESSION_LIMITS = {
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
    "gatewayRateLimits": {
        "messages": "0:0,",
        "telemetryMessages": "0:0,",
        "telemetryDataPoints": "0:0,",
    },
}


class ThingsBoardStandIn:
    """Answers the session-limits request and counts forwarded readings by msg_id."""

    def __init__(self, host: str, port: int) -> None:
        self.readings: Counter[str] = Counter()
        self.limits_requests = 0
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="thingsboard-standin")
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(RPC_REQUESTS, 1), (GATEWAY_TELEMETRY, 1)]
        )
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the ThingsBoard stand-in could not subscribe")

    def delivered(self) -> Counter[str]:
        """How often each msg_id has arrived so far."""
        with self._lock:
            return Counter(self.readings)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: Any) -> None:
        if message.topic == GATEWAY_TELEMETRY:
            self._count(json.loads(message.payload))
            return
        request = json.loads(message.payload)
        if request.get("method") == "getSessionLimits":
            self.limits_requests += 1
            request_id = message.topic.rsplit("/", 1)[1]
            client.publish(RPC_RESPONSES + request_id, json.dumps(SESSION_LIMITS), qos=1)

    def _count(self, telemetry: dict[str, list[dict[str, Any]]]) -> None:
        with self._lock:
            for readings in telemetry.values():
                for reading in readings:
                    msg_id = reading.get("values", {}).get("msg_id")
                    if msg_id is not None:
                        self.readings[str(msg_id)] += 1
