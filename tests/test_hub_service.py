"""The hub end to end inside one process, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.broker import ManagedBroker
from hub.cli import main
from hub.events import device_event_id
from hub.service import HubService
from sync.city_store import SQLiteBatchStore
from sync.keys import add_key
from sync.receiver import BackgroundReceiver, Faults, create_app
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
    assert service.ingest.wait_subscribed(10)  # SUBACK: the broker now queues for the hub
    yield service
    await service.stop()


@pytest.fixture
def device(broker: ManagedBroker) -> DeviceClient:
    client = DeviceClient(broker.port, "test-device")
    yield client
    client.close()


def _notices(crews: Listener, event: str, device_id: str) -> list[tuple[str, Any, float]]:
    """Crew notices of one kind about one device (the hub also tells hall IT of others)."""
    return [
        message
        for message in crews.messages
        if message[1]["event"] == event and message[1].get("device_id") == device_id
    ]


def count(hub: HubService, sql: str) -> int:
    with hub.journal.reading() as conn:
        return int(conn.execute(sql).fetchone()[0] or 0)


async def test_toilet_call_opens_alert_and_reset_closes_it(
    hub: HubService, broker: ManagedBroker, device: DeviceClient
) -> None:
    """A press opens an urgent duty-desk alert told to crews on MQTT; reset closes it.

    How fast is measured by bench/alert_latency.py, not asserted here (shared machines).
    """
    root = hub.config.mqtt.topic_root
    crews = Listener(broker.port, f"{hub.config.mqtt.crew_topic_root}/#")
    try:
        device.publish(f"{root}/alarm-1/call", {"source": "cord"})
        notice = await eventually(lambda: _notices(crews, "opened", "alarm-1"))
        device.publish(f"{root}/alarm-1/reset", {})
        await eventually(lambda: _notices(crews, "resolved", "alarm-1"))
    finally:
        crews.close()

    topic, alert, _arrived_at = notice[0]
    assert topic.endswith("/crews/duty_desk/alerts")
    assert alert["severity"] == "urgent" and alert["device_id"] == "alarm-1"
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
            if count(hub, "SELECT SUM(count) FROM dead_letters") >= window + 51
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
        return conn.execute(
            "SELECT reason, SUM(count) FROM dead_letters GROUP BY reason"
        ).fetchall()


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


async def test_rating_the_city_refuses_is_quarantined_with_an_alert(
    broker: ManagedBroker,
    tmp_path: Path,
    unique_topic_root: str,
    device: DeviceClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rating the city refuses is quarantined on the hub, opens a warning alert for
    hall IT, shows in /api/sync and in `hallhub sync status` (table and --json), and a
    later rating still reaches the city. `hallhub sync resolve` closes the entry and
    its alert, and the audit trail says who did what."""
    key = add_key(tmp_path / "keys.json", "hall-test")
    secret_file = tmp_path / "city-secret"
    secret_file.write_text(key.secret.hex(), encoding="ascii")
    store = SQLiteBatchStore(tmp_path / "city.db")
    poison = device_event_id("pad-1", f"{device.boot}-1")
    app = create_app(store, {key.key_id: key}, faults=Faults(reject_event_ids=[poison]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(app, sock)
    receiver.start()
    city = {
        "url": f"http://127.0.0.1:{sock.getsockname()[1]}",
        "key_id": key.key_id,
        "secret_file": str(secret_file),
    }
    root = unique_topic_root.replace("/", "-")
    service = HubService(hub_config(tmp_path / "hub", broker.port, root, DEVICES, city=city))
    await service.start()
    try:
        assert service.ingest.wait_subscribed(10)  # SUBACK: the broker now queues for the hub
        time.sleep(0.2)
        device.publish(f"{root}/pad-1/rating", {"level": "满意", "window": "W1"})
        device.publish(f"{root}/pad-1/rating", {"level": "不满意", "window": "W1"})
        alert = await eventually(lambda: _alerts_for(service, "hall_it"))
        uplink = service.uplink
        assert uplink is not None
        # Two pad ratings and the two rating_recorded events that chain them.
        await eventually(lambda: uplink.status()["rating"]["acked_seq"] == 4)
        async with httpx.AsyncClient(base_url=service.console_url) as http:
            auth = {"Authorization": f"Bearer {service.token}"}
            sync = (await http.get("/api/sync", headers=auth)).json()
        cli = ["sync", "status", "--url", service.console_url]
        cli += ["--token-file", str(tmp_path / "hub" / "api-token")]
        capsys.readouterr()
        table_code = await asyncio.to_thread(main, cli)
        table = capsys.readouterr().out
        json_code = await asyncio.to_thread(main, [*cli, "--json"])
        as_json = json.loads(capsys.readouterr().out)
        resolve = ["sync", "resolve", "rating", "1", "--resolution", "entered at the city"]
        resolve += ["--by", "it-wang", *cli[2:]]
        resolve_code = await asyncio.to_thread(main, resolve)
        resolved = capsys.readouterr().out
        async with httpx.AsyncClient(base_url=service.console_url) as http:
            after = (await http.get("/api/sync", headers=auth)).json()
        audit = [e for e in service.audit.entries() if e.action == "sync.quarantine.resolve"]
        alert_after = _alerts_for(service, "hall_it")
    finally:
        await service.stop()
        receiver.stop()
        store.close()

    assert alert[0]["severity"] == "high" and alert[0]["opened_by_event"] == poison
    assert sync["set_aside"]["quarantined_open"] == 1
    assert sync["set_aside"]["quarantine"][0]["event_id"] == poison
    assert store_counts(tmp_path / "city.db") == (1, 1)
    assert (table_code, json_code) == (0, 0)
    assert "rating" in table and "quarantined (open): 1" in table
    assert f"quarantined rating seq 1 {poison}" in table
    assert as_json["set_aside"]["quarantined_open"] == 1
    assert as_json["lanes"]["rating"]["acked_seq"] == 4
    assert resolve_code == 0 and "resolved by it-wang" in resolved
    assert after["set_aside"]["quarantined_open"] == 0
    assert after["set_aside"]["quarantine"][0]["resolution"] == "entered at the city"
    assert alert_after[0]["state"] == "resolved"
    assert (audit[0].actor, audit[0].action, audit[0].target) == (
        "it-wang",
        "sync.quarantine.resolve",
        "rating/1",
    )


def _alerts_for(hub: HubService, team: str) -> list[dict[str, object]]:
    """The team's sync quarantine alerts."""
    with hub.journal.reading() as conn:
        rows = conn.execute(
            "SELECT * FROM alerts WHERE team = ? AND condition LIKE 'sync_quarantine:%'", (team,)
        ).fetchall()
    return [dict(row) for row in rows]


def store_counts(path: Path) -> tuple[int, int]:
    """Pad rating events and tombstones the city holds."""
    with sqlite3.connect(path) as conn:
        events = conn.execute(
            "SELECT COUNT(*) FROM events WHERE lane = 'rating' AND type = 'rating'"
        ).fetchone()[0]
        tombstones = conn.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]
    conn.close()
    return int(events), int(tombstones)


async def test_a_failing_rule_does_not_stop_later_alerts(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str, device: DeviceClient
) -> None:
    """A rule that blows up on one event is logged; the next toilet call still opens an alert."""
    root = unique_topic_root.replace("/", "-")
    broken_rule = tmp_path / "broken.yaml"
    broken_rule.write_text(
        "rules:\n"
        "  - id: broken-format\n"
        "    when: {kind: rating_pad, type: rating}\n"
        "    then: [{raise: {condition: x, severity: low, team: t, message: '{zone:d}'}}]\n",
        encoding="utf-8",
    )
    config = hub_config(tmp_path / "hub", broker.port, root, DEVICES, rule_files=[broken_rule])
    service = HubService(config)
    await service.start()
    try:
        assert service.ingest.wait_subscribed(10)
        device.publish(f"{root}/pad-1/rating", {"level": "满意", "window": "W1"})
        device.publish(f"{root}/alarm-1/call", {"source": "cord"})
        await eventually(
            lambda: count(service, "SELECT COUNT(*) FROM alerts WHERE device_id = 'alarm-1'")
        )
    finally:
        await service.stop()


async def test_second_hub_on_the_same_state_dir_is_refused(
    hub: HubService, broker: ManagedBroker
) -> None:
    """Two hubs on one journal would corrupt each other's sequences; the second is refused."""
    from hub.statelock import StateDirInUseError

    twin = HubService(hub.config)
    with pytest.raises(StateDirInUseError, match="in use by another hub"):
        await twin.start()
    assert hub.ingest.connected  # the first hub is untouched


async def test_managed_broker_runs_under_the_hub(tmp_path: Path, unique_topic_root: str) -> None:
    """With mqtt.managed the hub runs its own Mosquitto and stops it on the way out."""
    from tests.conftest import free_port

    port = free_port()
    root = unique_topic_root.replace("/", "-")
    config = hub_config(tmp_path / "hub", port, root, DEVICES)
    config.mqtt.managed = True
    service = HubService(config)
    await service.start()
    try:
        assert service.ingest.wait_subscribed(15)
        assert service.broker is not None and service.broker.running
        broker = service.broker
    finally:
        await service.stop()
    assert not broker.running


async def test_text_that_sqlite_cannot_store_is_refused_not_left_in_flight(
    hub: HubService, device: DeviceClient
) -> None:
    """Lone surrogates beyond the receive window are refused and acknowledged.

    A toilet call sent after them still opens its alert.
    """
    root = hub.config.mqtt.topic_root
    poison = b'{"msg_id": "p%d", "online": true, "firmware": "\\ud800"}'
    for n in range(hub.config.mqtt.receive_maximum + 20):
        device.publish(f"{root}/pad-1/status", poison.replace(b"%d", str(n).encode()))
    device.publish(f"{root}/alarm-1/call", {"source": "cord"})

    await eventually(lambda: count(hub, "SELECT COUNT(*) FROM alerts WHERE device_id = 'alarm-1'"))
    assert count(hub, "SELECT SUM(count) FROM dead_letters WHERE reason = 'not_utf8'") >= 220


async def test_reused_message_id_with_other_content_is_kept_aside(
    hub: HubService, device: DeviceClient
) -> None:
    """A device reusing a msg_id for a different message is flagged, not silently dropped."""
    root = hub.config.mqtt.topic_root
    body = b'{"msg_id": "7", "level": "%s", "window": "W1"}'
    device.publish(f"{root}/pad-1/rating", body % "满意".encode())
    device.publish(f"{root}/pad-1/rating", body % "满意".encode())  # a true redelivery
    device.publish(f"{root}/pad-1/rating", body % "不满意".encode())  # a collision

    await eventually(lambda: count(hub, "SELECT COUNT(*) FROM dead_letters"))
    assert count(hub, "SELECT COUNT(*) FROM events WHERE type = 'rating'") == 1
    assert count(hub, "SELECT COUNT(*) FROM dead_letters WHERE reason = 'id_collision'") == 1


async def test_huge_refused_payload_keeps_only_its_head(
    hub: HubService, device: DeviceClient
) -> None:
    """A 200 kB refused message stores 4 KB plus its size and digest; repeats are counted."""
    junk = b"x" * 200_000
    device.publish(f"{hub.config.mqtt.topic_root}/ghost/call", junk)
    device.publish(f"{hub.config.mqtt.topic_root}/ghost/call", junk)

    await eventually(lambda: count(hub, "SELECT SUM(count) FROM dead_letters") == 2)
    with hub.journal.reading() as conn:
        size, kept, repeats = conn.execute(
            "SELECT size, LENGTH(raw), count FROM dead_letters"
        ).fetchone()
    assert (size, kept, repeats) == (200_000, 4096, 2)


async def test_call_committed_just_before_a_crash_still_alerts_after_restart(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A call journaled and acknowledged, cut off before the rules ran, alerts at restart."""
    from hub.events import Lane, Observation, device_event_id
    from hub.journal import Journal

    config = hub_config(tmp_path / "hub", broker.port, unique_topic_root.replace("/", "-"), DEVICES)
    journal = Journal(config.hub.state_dir / "journal.sqlite3", config.hub.id)
    journal.open()
    call = Observation(
        device_event_id("alarm-1", "boot1-7"),
        Lane.ALARM,
        "alarm-1",
        "toilet_alarm",
        "call",
        {"source": "cord"},
        time.time(),
        True,
    )
    await journal.append(call)
    journal.close()  # the power fails here: PUBACK sent, rules never ran

    service = HubService(config)
    await service.start()
    try:
        await eventually(
            lambda: count(
                service,
                "SELECT COUNT(*) FROM alerts WHERE device_id = 'alarm-1' AND state = 'open'",
            )
        )
    finally:
        await service.stop()

    again = HubService(config)  # and a second restart does not raise it twice
    await again.start()
    try:
        await asyncio.sleep(0.3)
        assert count(again, "SELECT COUNT(*) FROM alerts WHERE device_id = 'alarm-1'") == 1
        assert count(again, "SELECT count FROM alerts WHERE device_id = 'alarm-1'") == 1
    finally:
        await again.stop()


async def test_unusable_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    """A state folder that cannot be created gives one clear error, not a traceback."""
    from hub.errors import HallhubError

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    service = HubService(hub_config(blocker / "hub", 1, "x", DEVICES))

    with pytest.raises(HallhubError, match="cannot use state folder"):
        await service.start()


async def test_acknowledging_an_impossible_alert_id_is_not_found(hub: HubService) -> None:
    """An alert id too large for SQLite is answered 404, not a server error."""
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        reply = await http.post(
            "/api/alerts/99999999999999999999999/acknowledge",
            headers={"Authorization": f"Bearer {hub.token}"},
        )
    assert reply.status_code == 404


async def test_call_held_while_the_journal_is_full_arrives_once_space_returns(
    hub: HubService, device: DeviceClient
) -> None:
    """With the journal full, ratings and a toilet call are held, not lost or refused;
    they are journaled and the call alerts once space returns."""
    root = hub.config.mqtt.topic_root
    hub.journal.set_size_limit(hub.journal.path.stat().st_size).result(timeout=5)
    for n in range(300):
        device.publish(f"{root}/pad-1/rating", {"level": "满意", "window": f"W{n}"})
    device.publish(f"{root}/alarm-1/call", {"source": "cord"})
    await asyncio.sleep(1.5)
    held = 300 - count(hub, "SELECT COUNT(*) FROM events WHERE type = 'rating'")
    assert held > 0, "the size limit did not fill the journal"
    assert count(hub, "SELECT COUNT(*) FROM events WHERE type = 'call'") == 0

    await eventually(lambda: _lift_size_limit(hub), timeout=10)

    await eventually(
        lambda: count(hub, "SELECT COUNT(*) FROM alerts WHERE device_id = 'alarm-1'"), timeout=40
    )
    await eventually(
        lambda: count(hub, "SELECT COUNT(*) FROM events WHERE type = 'rating'") == 300, 40
    )
    assert count(hub, "SELECT COUNT(*) FROM events WHERE type = 'call'") == 1
    assert count(hub, "SELECT COUNT(*) FROM dead_letters") == 0


def _lift_size_limit(hub: HubService) -> bool:
    """Lift the cap; while the journal is full, the group carrying it may fail too."""
    from hub.errors import JournalError

    try:
        hub.journal.set_size_limit(None).result(timeout=5)
    except JournalError:
        return False
    return True
