"""MQTT in the field: broker restarts and crashes, long hub outages, a second hub,
and handlers that fail; each against a real Mosquitto and a real hub."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.broker import ManagedBroker
from hub.config import HubConfig
from hub.events import Event, device_event_id
from hub.service import HubService
from tests.conftest import LOOPBACK, free_port
from tests.hubkit import DeviceClient, eventually, hub_config

PAD = {"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1-windows", "window": "W1"}
ALARM = {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "f1-accessible-wc", "floor": 1}
RATING = {"level": "满意", "window": "W1"}


def publish_many(device: DeviceClient, topic: str, count: int) -> list[str]:
    """Publish `count` QoS 1 ratings without waiting for each PUBACK, then wait for all."""
    sent, msg_ids = [], []
    for _ in range(count):
        device._counter += 1
        msg_id = f"{device.boot}-{device._counter}"
        body = json.dumps({"msg_id": msg_id, "ts": time.time(), **RATING}).encode()
        sent.append(device.client.publish(topic, body, qos=1))
        msg_ids.append(msg_id)
    for info in sent:
        info.wait_for_publish(timeout=30)
    return msg_ids


def journaled_msg_ids(config: HubConfig, msg_ids: list[str]) -> set[str]:
    """Those of the pad's `msg_ids` whose events are in the hub's journal file."""
    path = config.hub.state_dir / "journal.sqlite3"
    if not path.exists():
        return set()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT event_id FROM events WHERE type = 'rating'").fetchall()
    finally:
        conn.close()
    journaled = {row[0] for row in rows}
    return {msg_id for msg_id in msg_ids if device_event_id("pad-1", msg_id) in journaled}


async def started(config: HubConfig) -> HubService:
    service = HubService(config)
    await service.start()
    assert service.ingest.wait_subscribed(10), "hub never got its subscription confirmed"
    return service


@pytest.fixture
def pad_config(tmp_path: Path, fresh_broker: ManagedBroker) -> HubConfig:
    return hub_config(tmp_path / "hub", fresh_broker.port, "hall", [PAD, ALARM])


@pytest.fixture
def device_of(fresh_broker: ManagedBroker) -> Iterator[Any]:
    """Opens device clients on the test's broker and closes them all at the end."""
    opened: list[DeviceClient] = []

    def open_device() -> DeviceClient:
        client = DeviceClient(fresh_broker.port, "pad-1")
        opened.append(client)
        return client

    yield open_device
    for client in opened:
        client.close()


async def test_graceful_broker_restart_loses_nothing(
    fresh_broker: ManagedBroker, pad_config: HubConfig, device_of: Any
) -> None:
    """Messages journaled before, queued across, and sent after a graceful broker
    restart all reach the journal: the broker saves its queue when stopped."""
    hub = await started(pad_config)
    sent = publish_many(device_of(), "hall/pad-1/rating", 100)
    await eventually(lambda: set(sent) == journaled_msg_ids(pad_config, sent))
    await hub.stop()

    sent += publish_many(device_of(), "hall/pad-1/rating", 200)  # queued for the stopped hub
    fresh_broker.restart()
    hub = await started(pad_config)
    try:
        sent += publish_many(device_of(), "hall/pad-1/rating", 100)
        await eventually(lambda: set(sent) == journaled_msg_ids(pad_config, sent), timeout=20)
    finally:
        await hub.stop()
    assert len(set(sent)) == 400


async def test_broker_kill_loses_at_most_what_arrived_since_its_last_save(
    tmp_path: Path, device_of: Any
) -> None:
    """After a broker kill -9, every message it queued before its last autosave still
    reaches the hub; only what arrived after that save can be lost (README)."""
    broker = ManagedBroker(tmp_path / "broker", LOOPBACK, free_port(), autosave_interval=1)
    broker.start()
    config = hub_config(tmp_path / "hub", broker.port, "hall", [PAD])
    try:
        hub = await started(config)
        await hub.stop()  # its session now queues at the broker

        device = DeviceClient(broker.port, "pad-1")
        saved = publish_many(device, "hall/pad-1/rating", 300)
        saves_before = broker.log_path.read_text().count("Saving in-memory database")
        await eventually(
            lambda: (
                broker.log_path.read_text().count("Saving in-memory database") > saves_before + 1
            )
        )
        publish_many(device, "hall/pad-1/rating", 300)  # may be lost: not saved yet
        device.close()
        broker.kill()

        broker.start()
        hub = await started(config)
        try:
            await eventually(lambda: set(saved) == journaled_msg_ids(config, saved), timeout=20)
        finally:
            await hub.stop()
    finally:
        broker.stop()


async def test_subscription_restored_after_broker_restart_without_saved_session(
    fresh_broker: ManagedBroker, pad_config: HubConfig, device_of: Any
) -> None:
    """A broker that comes back with no mosquitto.db has forgotten the hub's
    subscription; the hub subscribes again on reconnect and messages keep arriving."""
    hub = await started(pad_config)
    try:
        fresh_broker.stop()
        (fresh_broker.state_dir / "mosquitto.db").unlink()
        fresh_broker.start()
        await eventually(lambda: hub.ingest.connections >= 2, timeout=15)

        sent = publish_many(device_of(), "hall/pad-1/rating", 10)
        await eventually(lambda: set(sent) == journaled_msg_ids(pad_config, sent))
    finally:
        await hub.stop()


async def test_more_than_debian_default_queued_while_hub_stopped_all_arrive(
    fresh_broker: ManagedBroker, pad_config: HubConfig, device_of: Any
) -> None:
    """1,500 messages published while the hub is stopped (Debian's Mosquitto would
    keep only 1,000) are all in the journal once the hub is back."""
    hub = await started(pad_config)
    await hub.stop()

    sent = publish_many(device_of(), "hall/pad-1/rating", 1500)
    hub = await started(pad_config)
    try:
        await eventually(lambda: set(sent) == journaled_msg_ids(pad_config, sent), timeout=30)
    finally:
        await hub.stop()


async def test_second_hub_with_same_client_id_is_detected_and_not_fought(
    fresh_broker: ManagedBroker, tmp_path: Path, device_of: Any
) -> None:
    """When a second hub connects with the first one's client id, the first raises an
    urgent alert for hall IT and stays off instead of taking the session back; its
    ticket desk goes off too, so only one hub numbers tickets."""
    first_config = hub_config(tmp_path / "first", fresh_broker.port, "hall", [PAD])
    second_config = first_config.model_copy(deep=True)
    second_config.hub.state_dir = tmp_path / "second"
    first = await started(first_config)
    second = await started(second_config)
    try:
        alerts = await eventually(lambda: _alerts(first, "mqtt_session_taken_over"))
        assert first.ingest.taken_over and alerts[0][1] == "urgent"

        time.sleep(4)  # several reconnect delays: the first hub must not come back
        sent = publish_many(device_of(), "hall/pad-1/rating", 5)
        await eventually(lambda: set(sent) == journaled_msg_ids(second_config, sent))
        assert not first.ingest.connected and first.ingest.connections == 2
        assert not first.ticket_desk.connected and second.ticket_desk.connected
        assert second.ingest.connected and second.ingest.connections <= 2
        assert not second.ingest.taken_over
        assert not journaled_msg_ids(first_config, sent)
    finally:
        await second.stop()
        await first.stop()


async def test_raising_handler_does_not_stop_the_event_feed(
    fresh_broker: ManagedBroker, pad_config: HubConfig, device_of: Any
) -> None:
    """A rule that raises on one event leaves the next events' rules running: the
    next toilet call still opens an alert."""
    hub = await started(pad_config)
    evaluate = hub.rules.engine.evaluate
    failures: list[str] = []

    def failing_once(event: Event, zone: str, now: Any) -> Any:
        if not failures:
            failures.append(event.event_id)
            raise RuntimeError("a broken rule")
        return evaluate(event, zone, now)

    hub.rules.engine.evaluate = failing_once  # type: ignore[method-assign]
    try:
        device = device_of()
        device.publish("hall/alarm-1/call", {"source": "cord"})
        await eventually(lambda: failures)
        device.publish("hall/alarm-1/reset", {})
        device.publish("hall/alarm-1/call", {"source": "cord"})
        await eventually(lambda: _alerts(hub, "toilet_call"))
    finally:
        await hub.stop()


async def test_blocked_handler_neither_stops_ingest_nor_starves_keepalive(
    fresh_broker: ManagedBroker, pad_config: HubConfig, device_of: Any
) -> None:
    """With the hub's event loop blocked by a handler for three keepalive periods,
    device messages are still journaled and acknowledged, and the connection holds."""
    pad_config.mqtt.keepalive = 1
    hub = await started(pad_config)
    device = device_of()
    during_block: dict[str, bool] = {}
    release = threading.Event()

    def publish_while_blocked() -> None:
        sent = publish_many(device, "hall/pad-1/rating", 20)  # every PUBACK comes back
        deadline = time.monotonic() + 10
        while set(sent) != journaled_msg_ids(pad_config, sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        during_block["journaled"] = set(sent) == journaled_msg_ids(pad_config, sent)
        time.sleep(3)  # three keepalive periods with the loop still blocked
        release.set()

    blocked = threading.Event()

    def blocking_rule(_event: Event, _zone: str, _now: Any) -> list[Any]:
        if blocked.is_set():  # only the first event blocks; the ratings pass through
            return []
        blocked.set()
        threading.Thread(target=publish_while_blocked, name="publisher", daemon=True).start()
        release.wait(20)
        return []

    hub.rules.engine.evaluate = blocking_rule  # type: ignore[method-assign]
    try:
        device.publish("hall/alarm-1/call", {"source": "cord"})
        await eventually(release.is_set, timeout=20)
        assert during_block["journaled"]
        assert hub.ingest.connected and hub.ingest.connections == 1
    finally:
        await hub.stop()


def _alerts(hub: HubService, condition: str) -> list[tuple[str, str]]:
    with hub.journal.reading() as conn:
        rows = conn.execute(
            "SELECT state, severity FROM alerts WHERE condition = ?", (condition,)
        ).fetchall()
    return [(row[0], row[1]) for row in rows]
