"""Helpers for tests that run a real hub against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from hub.config import HubConfig
from hub.service import HubService


def hub_config(
    state_dir: Path, broker_port: int, topic_root: str, devices: list[dict[str, Any]], **extra: Any
) -> HubConfig:
    """A configuration for a hub under test: loopback only, console on a free port."""
    document: dict[str, Any] = {
        "hub": {"id": "hall-test", "state_dir": str(state_dir), "clock_sync": "assume"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker_port,
            "topic_root": topic_root,
            "crew_topic_root": f"{topic_root}-crews",
            "client_id": f"hallhub-test-{secrets.token_hex(4)}",
        },
        "console": {"host": "127.0.0.1", "port": 0},
        "devices": devices,
        **extra,
    }
    return HubConfig.model_validate(document)


class DeviceClient:
    """A plain MQTT 3.1.1 client standing in for one device."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._counter = 0
        self.boot = secrets.token_hex(3)

    def publish(self, topic: str, payload: dict[str, Any] | bytes, retain: bool = False) -> str:
        """Publish at QoS 1 and wait for PUBACK; returns the msg_id used."""
        self._counter += 1
        msg_id = f"{self.boot}-{self._counter}"
        if isinstance(payload, dict):
            body = json.dumps({"msg_id": msg_id, "ts": time.time(), **payload}).encode()
        else:
            body = payload
        self.client.publish(topic, body, qos=1, retain=retain).wait_for_publish(timeout=5)
        return msg_id

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Listener:
    """Collects what arrives on a topic filter."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, dict[str, Any], float]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, json.loads(m.payload), time.monotonic())
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(5), "listener could not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_hub(
    broker_port: int,
    state_dir: Path,
    topic_root: str,
    devices: list[dict[str, Any]],
    **extra: Any,
) -> AsyncIterator[HubService]:
    """A started hub (its MQTT subscription acknowledged), stopped on leaving."""
    root = topic_root.replace("/", "-")
    service = HubService(hub_config(state_dir, broker_port, root, devices, **extra))
    await service.start()
    try:
        assert service.ingest.wait_subscribed(10)
        yield service
    finally:
        await service.stop()
