"""A running hub (real Mosquitto, real console) for the alert API and channel tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.broker import ManagedBroker
from hub.service import HubService
from tests.hubkit import hub_config

DEVICES = [
    {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "f1-accessible-wc", "floor": 1},
    {"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1-windows", "window": "W1"},
]


async def running_hub(
    broker: ManagedBroker, state_dir: Path, topic_root: str, alerts: dict[str, Any]
) -> HubService:
    """Start a hub with the given ``alerts:`` section; the caller stops it."""
    root = topic_root.replace("/", "-")
    config = hub_config(state_dir, broker.port, root, DEVICES, alerts=alerts)
    service = HubService(config)
    await service.start()
    assert service.ingest.wait_connected(10)
    assert service.crews.mqtt.wait_listening(10)
    assert service.ingest.wait_subscribed(10)
    return service


@pytest.fixture
async def hub(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    service = await running_hub(broker, tmp_path / "hub", unique_topic_root.replace("/", "-"), {})
    yield service
    await service.stop()
