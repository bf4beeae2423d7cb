"""The hub end to end inside one process, against a real Mosquitto."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hub.broker import ManagedBroker
from hub.service import HubService
from tests.hubkit import DeviceClient, Listener, eventually, hub_config

DEVICES = [
    {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "f1-accessible-wc", "floor": 1},
    {"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1-windows", "window": "W1"},
]


@pytest.fixture
async def hub(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    root = unique_topic_root.replace("/", "-")
    service = HubService(hub_config(tmp_path / "hub", broker.port, root, DEVICES))
    await service.start()
    assert service.ingest.wait_connected(10)
    time.sleep(0.2)  # let the subscription settle at the broker
    yield service
    await service.stop()


@pytest.fixture
def device(broker: ManagedBroker) -> DeviceClient:
    client = DeviceClient(broker.port, "test-device")
    yield client
    client.close()


def count(hub: HubService, sql: str) -> int:
    with hub.journal.reading() as conn:
        return int(conn.execute(sql).fetchone()[0])


async def test_toilet_call_opens_alert_and_reset_closes_it(
    hub: HubService, broker: ManagedBroker, device: DeviceClient
) -> None:
    """A press opens an urgent duty-desk alert, told to crews within 1 s; reset closes it."""
    root = hub.config.mqtt.topic_root
    crews = Listener(broker.port, f"{hub.config.mqtt.crew_topic_root}/#")
    try:
        pressed_at = time.monotonic()
        device.publish(f"{root}/alarm-1/call", {"source": "cord"})
        notice = await eventually(lambda: [m for m in crews.messages if m[1]["event"] == "opened"])
        device.publish(f"{root}/alarm-1/reset", {})
        await eventually(lambda: [m for m in crews.messages if m[1]["event"] == "resolved"])
    finally:
        crews.close()

    topic, alert, arrived_at = notice[0]
    assert topic.endswith("/crews/duty_desk/alerts")
    assert alert["severity"] == "urgent" and alert["device_id"] == "alarm-1"
    assert arrived_at - pressed_at < 1.0
    assert count(hub, "SELECT COUNT(*) FROM alerts WHERE state = 'resolved'") == 1


async def test_retained_call_replayed_at_subscribe_raises_nothing(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str, device: DeviceClient
) -> None:
    """A 'call' the broker replays from retained state is stored but is not a new press."""
    root = unique_topic_root.replace("/", "-")
    device.publish(f"{root}/alarm-1/call", {"source": "button"}, retain=True)
    service = HubService(hub_config(tmp_path / "hub", broker.port, root, DEVICES))
    await service.start()
    try:
        await eventually(lambda: count(service, "SELECT COUNT(*) FROM events WHERE retained = 1"))
        await eventually(lambda: service.registry.get("alarm-1").last_seen)  # type: ignore[union-attr]
        assert count(service, "SELECT COUNT(*) FROM alerts WHERE device_id = 'alarm-1'") == 0
    finally:
        device.client.publish(f"{root}/alarm-1/call", b"", qos=1, retain=True).wait_for_publish(5)
        await service.stop()


async def test_bad_input_beyond_the_inflight_window_does_not_stall_ingest(
    hub: HubService, device: DeviceClient
) -> None:
    """More refused messages than the receive window, then a good one: it arrives."""
    root = hub.config.mqtt.topic_root
    window = hub.config.mqtt.receive_maximum
    bad = [b"not json", b"\xff\xfe", b'{"level": 7, "window": "W1"}']
    for i in range(window + 50):
        device.publish(f"{root}/pad-1/rating", bad[i % len(bad)])
    device.publish(f"{root}/ghost-9/rating", {"level": "满意", "window": "W1"})
    device.publish(f"{root}/pad-1/rating", {"level": "满意", "window": "W1"})

    await eventually(lambda: count(hub, "SELECT COUNT(*) FROM events WHERE type = 'rating'"))
    reasons = await eventually(
        lambda: (
            dict(_reasons(hub))
            if count(hub, "SELECT COUNT(*) FROM dead_letters") >= window + 51
            else None
        )
    )
    assert reasons["unknown_device"] == 1
    assert reasons["not_json"] + reasons["not_utf8"] + reasons["wrong_type"] == window + 50
    with hub.journal.reading() as conn:
        raw = conn.execute("SELECT raw FROM dead_letters WHERE reason = 'not_utf8'").fetchone()[0]
    assert raw == b"\xff\xfe"  # the raw bytes are kept for inspection


def _reasons(hub: HubService) -> list[tuple[str, int]]:
    with hub.journal.reading() as conn:
        return conn.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason").fetchall()


async def test_console_requires_token_except_healthz(hub: HubService, device: DeviceClient) -> None:
    """Every route but /healthz refuses a request without the token."""
    device.publish(f"{hub.config.mqtt.topic_root}/pad-1/rating", {"level": "满意", "window": "W1"})
    await eventually(lambda: hub.registry.get("pad-1").online)  # type: ignore[union-attr]
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        for route in ("/", "/api/devices", "/api/alerts", "/api/sync", "/metrics"):
            assert (await http.get(route)).status_code == 401, route
            wrong = await http.get(route, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, route
        auth = {"Authorization": f"Bearer {hub.token}"}
        devices = (await http.get("/api/devices", headers=auth)).json()["devices"]
        page = await http.get("/", headers=auth)
        metrics = await http.get("/metrics", headers=auth)

    pad = next(d for d in devices if d["device_id"] == "pad-1")
    assert pad["online"] and pad["last_values"]["level"] == "满意"
    assert "pad-1" in page.text and "alarm-1" in page.text
    assert 'hallhub_events_ingested_total{kind="rating_pad",result="accepted"}' in metrics.text


async def test_state_change_refuses_cookie_only_requests(hub: HubService) -> None:
    """Acknowledging through the cookie alone is refused, so other sites cannot forge it."""
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        http.cookies.set("hallhub_token", hub.token)
        refused = await http.post("/api/alerts/1/acknowledge", json={"by": "x"})
        page = await http.get("/")
    assert refused.status_code == 401
    assert page.status_code == 200
