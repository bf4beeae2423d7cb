"""The device registry in a running hub: pending, commissioned, retired; drift; health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devices.commissioning import Placement
from devices.profiles import load_models, shipped_models_dir
from devices.registry import HealthChange, Registry
from hub.broker import ManagedBroker
from hub.cli import main
from hub.config import DeviceSpec
from hub.service import HubService
from tests.hubkit import DeviceClient, eventually, hub_config
from tests.rulekit import event

DEVICES = [
    {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "1F accessible toilet", "floor": 1},
    {"id": "printer-1", "model": "ticket-printer-tp80", "zone": "1F entrance", "floor": 1},
    {"id": "alarm-2", "model": "toilet-alarm-wireless-ta2", "zone": "2F accessible toilet"},
]


def _config(state_dir: Path, broker: ManagedBroker, root: str) -> Any:
    return hub_config(state_dir, broker.port, root, DEVICES)


@pytest.fixture
def root(unique_topic_root: str) -> str:
    return unique_topic_root.replace("/", "-")


@pytest.fixture
async def hub(broker: ManagedBroker, tmp_path: Path, root: str) -> AsyncIterator[HubService]:
    service = HubService(_config(tmp_path / "hub", broker, root))
    await service.start()
    assert service.ingest.wait_subscribed(10)
    yield service
    await service.stop()


@pytest.fixture
def device(broker: ManagedBroker) -> AsyncIterator[DeviceClient]:
    client = DeviceClient(broker.port, "registry-test-device")
    yield client
    client.close()


async def devices_cli(
    hub: HubService, capsys: pytest.CaptureFixture[str], *argv: str
) -> dict[str, Any]:
    """Run ``hallhub devices --json …`` against the hub and return its JSON answer."""
    token_file = hub.config.hub.state_dir / "api-token"
    common = ["devices", "--url", hub.console_url, "--token-file", str(token_file), "--json"]
    capsys.readouterr()
    code = await asyncio.to_thread(main, [*common, *argv])
    assert code == 0
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    return answer


def _scalar(hub: HubService, sql: str, *params: Any) -> Any:
    with hub.journal.reading() as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


async def test_unknown_device_is_pending_then_commissioned_through_the_cli(
    hub: HubService, device: DeviceClient, root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new printer's messages are kept while it is pending and listed; commissioning
    it through the CLI journals them (as replays, firing no rule), shows its firmware
    drift, and is recorded in the audit trail with who did it."""
    device.publish(f"{root}/printer-9/status", {"online": True, "firmware": "2.3"})
    device.publish(f"{root}/printer-9/ticket", {"ticket": "A001", "category": "A"})

    def kept() -> int:
        pending = hub.commissioning.find_pending("printer-9")
        return 0 if pending is None else pending.messages

    await eventually(lambda: kept() == 2)
    pending = await devices_cli(hub, capsys, "list", "--state", "pending")
    assert [d["device_id"] for d in pending["devices"]] == ["printer-9"]
    assert _scalar(hub, "SELECT COUNT(*) FROM events WHERE device_id = 'printer-9'") == 0

    answer = await devices_cli(
        hub, capsys, "commission", "printer-9", "--model", "ticket-printer-tp80",
        "--zone", "2F entrance", "--floor", "2", "--by", "it-wang",
    )  # fmt: skip
    assert answer["device"]["state"] == "commissioned"
    assert answer["device"]["zone"] == "2F entrance"
    replayed = "SELECT COUNT(*) FROM events WHERE device_id = 'printer-9' AND retained = 1"
    assert _scalar(hub, replayed) == 2
    assert hub.commissioning.find_pending("printer-9") is None

    shown = await devices_cli(hub, capsys, "show", "printer-9")
    drift = await eventually(lambda: hub.registry.get("printer-9").drift())  # type: ignore[union-attr]
    assert drift == [{"field": "firmware", "expected": "2.4", "reported": "2.3"}]
    assert shown["device"]["address"] == "mqtt:printer-9"
    (entry,) = [e for e in hub.audit.entries() if e.action == "device.commission"]
    assert (entry.actor, entry.action, entry.target) == (
        "it-wang",
        "device.commission",
        "printer-9",
    )


async def test_mqtt_acl_follows_what_hall_it_commissioned_and_retired(
    hub: HubService, device: DeviceClient, root: str, tmp_path: Path
) -> None:
    """`hallhub mqtt-acl` gives a device commissioned through the console its broker
    account and ACL, and takes the account of a configured device retired there."""
    device.publish(f"{root}/printer-9/status", {"online": True, "firmware": "2.4"})
    await eventually(lambda: hub.commissioning.find_pending("printer-9") is not None)
    placement = Placement(model="ticket-printer-tp80", zone="2F entrance")
    await hub.commissioning.commission("printer-9", placement, "it-wang")
    await hub.commissioning.retire("alarm-2", "it-wang")
    config_file = tmp_path / "hallhub.yaml"
    hall = {
        "hub": {"id": "hall-test", "state_dir": str(hub.config.hub.state_dir)},
        "mqtt": {"topic_root": root},
        "devices": DEVICES,
    }
    config_file.write_text(json.dumps(hall), encoding="utf-8")

    assert await asyncio.to_thread(main, ["mqtt-acl", "--config", str(config_file)]) == 0

    auth = hub.config.hub.state_dir / "mqtt-auth"
    accounts = set(yaml.safe_load((auth / "mqtt-credentials.yaml").read_text()))
    assert {"alarm-1", "printer-1", "printer-9"} <= accounts
    assert "alarm-2" not in accounts
    assert f"user printer-9\ntopic write {root}/printer-9/#" in (auth / "mosquitto.acl").read_text()


async def test_commission_and_retire_survive_a_restart_and_retired_messages_are_kept(
    broker: ManagedBroker, tmp_path: Path, root: str, device: DeviceClient
) -> None:
    """States are kept in the journal file: after a restart a commissioned device is
    still taken in and a retired one still refused (its message kept as a dead
    letter, never lost), and both changes came through the authenticated API."""
    config = _config(tmp_path / "hub", broker, root)
    first = HubService(config)
    await first.start()
    try:
        assert first.ingest.wait_subscribed(10)
        device.publish(f"{root}/pad-7/heartbeat", {})
        await eventually(lambda: first.commissioning.find_pending("pad-7"))
        async with httpx.AsyncClient(base_url=first.console_url) as http:
            refused = await http.post("/api/devices/pad-7/commission", json={})
            assert refused.status_code == 401
            auth = {"Authorization": f"Bearer {first.token}"}
            body = {"model": "rating-pad-rp5", "window": "W07", "by": "it-li"}
            done = await http.post("/api/devices/pad-7/commission", json=body, headers=auth)
            assert done.status_code == 200, done.text
            retired = await http.post("/api/devices/printer-1/retire", json={}, headers=auth)
            assert retired.json()["device"]["state"] == "retired"
    finally:
        await first.stop()

    second = HubService(_config(tmp_path / "hub", broker, root))
    await second.start()
    try:
        assert second.ingest.wait_subscribed(10)
        pad, printer = second.registry.get("pad-7"), second.registry.get("printer-1")
        assert pad is not None and pad.lifecycle == "commissioned" and pad.spec.window == "W07"
        assert printer is not None and printer.lifecycle == "retired"
        device.publish(f"{root}/printer-1/ticket", {"ticket": "A002", "category": "A"})
        device.publish(f"{root}/pad-7/rating", {"level": "满意", "window": "W07"})
        await eventually(lambda: _scalar(second, "SELECT COUNT(*) FROM events WHERE type='rating'"))
        kept = "SELECT COUNT(*) FROM dead_letters WHERE reason = 'retired_device'"
        await eventually(lambda: _scalar(second, kept))
        assert _scalar(second, "SELECT COUNT(*) FROM events WHERE type = 'ticket'") == 0
    finally:
        await second.stop()


async def test_health_shows_battery_paper_last_will_and_is_journaled(
    hub: HubService, device: DeviceClient, root: str
) -> None:
    """A printer's paper level and an alarm's battery show in the device list; an
    alarm's last will takes it offline with that reason, journaled in the health lane."""
    device.publish(f"{root}/printer-1/status", {"online": True, "paper": "low"})
    device.publish(f"{root}/alarm-2/status", {"online": True, "battery": 5})
    await eventually(lambda: hub.registry.get("alarm-2").online)  # type: ignore[union-attr]
    device.publish(f"{root}/alarm-2/status", {"online": False})

    offline = "SELECT data FROM events WHERE device_id='alarm-2' AND type='offline'"
    data = json.loads(await eventually(lambda: _scalar(hub, offline)))
    assert data["reason"] == "device reported offline (last will)"
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        auth = {"Authorization": f"Bearer {hub.token}"}
        rows = (await http.get("/api/devices", headers=auth)).json()["devices"]
    by_id = {row["device_id"]: row for row in rows}
    assert by_id["printer-1"]["paper"] == "low" and by_id["printer-1"]["online"] is True
    assert by_id["alarm-2"]["online"] is False and by_id["alarm-2"]["last_seen"] is not None
    assert by_id["alarm-2"]["battery"] == 5
    assert _scalar(hub, "SELECT lane FROM events WHERE type = 'offline'") == "health"


async def test_settings_differing_from_the_model_show_as_drift(
    hub: HubService, device: DeviceClient, root: str
) -> None:
    """An alarm set to a 60 s heartbeat where its model expects 30 is listed as drifted
    (``?drifted=1``); one matching its model is not."""
    device.publish(f"{root}/alarm-1/status", {"online": True, "heartbeat_interval": 60})
    device.publish(f"{root}/printer-1/status", {"online": True, "heartbeat_interval": 30})
    await eventually(lambda: hub.registry.get("printer-1").last_values)  # type: ignore[union-attr]
    await eventually(lambda: hub.registry.get("alarm-1").last_values)  # type: ignore[union-attr]

    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        auth = {"Authorization": f"Bearer {hub.token}"}
        rows = (await http.get("/api/devices?drifted=1", headers=auth)).json()["devices"]
    assert [row["device_id"] for row in rows] == ["alarm-1"]
    assert rows[0]["drift"] == [{"field": "heartbeat_interval", "expected": 30, "reported": 60}]


def test_silent_device_goes_offline_after_its_models_heartbeat_timeout() -> None:
    """A device heard once goes offline only once its model's heartbeat timeout (90 s
    for the tp80) has passed, and says so in its reason."""
    models = load_models(shipped_models_dir())
    registry = Registry([DeviceSpec(id="printer-1", model="ticket-printer-tp80")], models)
    registry.observe(event("printer-1", "ticket_printer", "heartbeat"), now_monotonic=1000.0)

    assert registry.expire(now_monotonic=1089.0) == []
    changes = registry.expire(now_monotonic=1091.0)

    assert changes == [HealthChange("printer-1", False, "nothing heard for 90 s")]
    assert registry.online_count() == 0
