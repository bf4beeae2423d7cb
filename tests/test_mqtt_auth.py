"""MQTT authentication: `hallhub mqtt-acl` files run on a real Mosquitto, and each
account keeps to its own topics."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from hub.broker import ManagedBroker
from hub.cli import main
from hub.mqtt_auth import hash_password
from hub.service import HubService
from tests.conftest import LOOPBACK, free_port
from tests.hubkit import eventually

HALL = {
    "hub": {"id": "hall-east", "state_dir": "state", "clock_sync": "assume"},
    "mqtt": {"topic_root": "hall", "crew_topic_root": "crews"},
    "console": {"port": 0},
    "devices": [
        {"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1", "window": "W1"},
        {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "f1-wc"},
    ],
}


class Account:
    """One MQTT client logged in with a user name and password."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.refused: int | None = None
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-test")
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._connected
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()

    def _connected(
        self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = int(getattr(reason, "value", 0))
        self._ready.set()

    def subscribe(self, topic_filter: str) -> None:
        self._ready.clear()
        self.client.subscribe(topic_filter, qos=1)
        assert self._ready.wait(5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def hall_dir(tmp_path: Path) -> Path:
    (tmp_path / "hallhub.yaml").write_text(yaml.safe_dump(HALL), encoding="utf-8")
    assert main(["mqtt-acl", "--config", str(tmp_path / "hallhub.yaml")]) == 0
    return tmp_path


@pytest.fixture
def secured_broker(hall_dir: Path) -> Iterator[ManagedBroker]:
    auth = hall_dir / "state" / "mqtt-auth"
    managed = ManagedBroker(hall_dir / "broker", LOOPBACK, free_port(), auth_dir=auth)
    managed.start()
    yield managed
    managed.stop()


def passwords(hall_dir: Path) -> dict[str, str]:
    text = (hall_dir / "state" / "mqtt-auth" / "mqtt-credentials.yaml").read_text()
    loaded: dict[str, str] = yaml.safe_load(text)
    return loaded


def test_mqtt_acl_writes_private_files_for_every_account(hall_dir: Path) -> None:
    """The command writes owner-only password, ACL and credential files naming the hub,
    every registry device and each crew team of the rules; a rerun keeps passwords."""
    folder = hall_dir / "state" / "mqtt-auth"
    before = passwords(hall_dir)
    teams = {"duty_desk", "device_crew", "floor_manager", "supervisor", "hall_it"}
    assert set(before) == {"hub", "pad-1", "alarm-1", *(f"crew-{team}" for team in teams)}

    assert main(["mqtt-acl", "--config", str(hall_dir / "hallhub.yaml")]) == 0
    assert passwords(hall_dir) == before
    for name in ("mosquitto.passwd", "mosquitto.acl", "mqtt-credentials.yaml"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    acl = (folder / "mosquitto.acl").read_text()
    assert "user pad-1\ntopic write hall/pad-1/#" in acl
    assert "topic write crews/hall-east/crews/duty_desk/acks" in acl
    assert before["pad-1"] not in (folder / "mosquitto.passwd").read_text()


def test_password_hash_is_mosquittos_format() -> None:
    """The hash has Mosquitto 2.0's $7$ layout: iterations, salt and digest in base64."""
    _, kind, rounds, salt, digest = hash_password("secret", salt=b"0" * 12).split("$")
    assert (kind, rounds, salt) == ("7", "101", "MDAwMDAwMDAwMDAw")
    assert len(digest) == 88  # 64 bytes of SHA-512 in base64


def test_device_cannot_publish_as_another_device(
    secured_broker: ManagedBroker, hall_dir: Path
) -> None:
    """pad-1, logged in with its own password, reaches the hub on its own topic; its
    message on alarm-1's topic is dropped by the broker and never reaches the hub."""
    secrets = passwords(hall_dir)
    hub = Account(secured_broker.port, "hub", secrets["hub"])
    pad = Account(secured_broker.port, "pad-1", secrets["pad-1"])
    try:
        hub.subscribe("hall/#")
        pad.publish("hall/alarm-1/call", b"forged")
        pad.publish("hall/pad-1/rating", b"genuine")
        eventually_sync(lambda: ("hall/pad-1/rating", b"genuine") in hub.messages)
        assert hub.messages == [("hall/pad-1/rating", b"genuine")]
    finally:
        pad.close()
        hub.close()


def test_handset_cannot_acknowledge_for_another_team(
    secured_broker: ManagedBroker, hall_dir: Path
) -> None:
    """A duty-desk handset's acknowledgement on hall IT's acks topic is dropped; on its
    own team's topic it reaches the hub."""
    secrets = passwords(hall_dir)
    hub = Account(secured_broker.port, "hub", secrets["hub"])
    handset = Account(secured_broker.port, "crew-duty_desk", secrets["crew-duty_desk"])
    crews = "crews/hall-east/crews"
    try:
        hub.subscribe("crews/#")
        handset.publish(f"{crews}/hall_it/acks", b'{"alert_id": 1}')
        handset.publish(f"{crews}/duty_desk/acks", b'{"alert_id": 2}')
        eventually_sync(lambda: hub.messages)
        assert hub.messages == [(f"{crews}/duty_desk/acks", b'{"alert_id": 2}')]
    finally:
        handset.close()
        hub.close()


def test_wrong_or_missing_password_is_refused(
    secured_broker: ManagedBroker, hall_dir: Path
) -> None:
    """A device presenting another device's password, or none, is not let in."""
    secrets = passwords(hall_dir)
    impostor = Account(secured_broker.port, "pad-1", secrets["alarm-1"])
    anonymous = Account(secured_broker.port, "", "")
    try:
        eventually_sync(lambda: impostor.refused is not None and anonymous.refused is not None)
    finally:
        impostor.close()
        anonymous.close()


async def test_hub_ingests_with_its_credentials(
    secured_broker: ManagedBroker, hall_dir: Path
) -> None:
    """A hub configured with user 'hub' and the password file mqtt-acl wrote connects to
    the secured broker and journals a device's message."""
    document = dict(HALL)
    document["mqtt"] = {
        **HALL["mqtt"],  # type: ignore[dict-item]
        "port": secured_broker.port,
        "username": "hub",
        "password_file": "state/mqtt-auth/hub-mqtt-password",
    }
    (hall_dir / "hallhub.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    from hub.config import load_config

    service = HubService(load_config(hall_dir / "hallhub.yaml"))
    await service.start()
    pad = Account(secured_broker.port, "pad-1", passwords(hall_dir)["pad-1"])
    try:
        assert service.ingest.wait_subscribed(10)
        pad.publish(
            "hall/pad-1/rating", b'{"msg_id": "m1", "level": "\\u6ee1\\u610f", "window": "W1"}'
        )

        def journaled() -> int:
            with service.journal.reading() as conn:
                return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

        await eventually(journaled)
    finally:
        pad.close()
        await service.stop()


def eventually_sync(check: object, timeout: float = 5.0) -> None:
    """Wait in this thread until `check()` is truthy, or fail."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if check():  # type: ignore[operator]
                return
            done.wait(0.02)
        raise AssertionError(f"condition not met within {timeout} s")
    finally:
        deadline.cancel()


async def test_handset_acknowledges_through_the_secured_broker(
    secured_broker: ManagedBroker, hall_dir: Path
) -> None:
    """Under the generated ACL the hub's crew link still hears its handsets: a duty-desk
    handset acknowledges a toilet call on its own team's topic."""
    document = dict(HALL)
    document["mqtt"] = {
        **HALL["mqtt"],  # type: ignore[dict-item]
        "port": secured_broker.port,
        "username": "hub",
        "password_file": "state/mqtt-auth/hub-mqtt-password",
    }
    document["alerts"] = {"handsets": {"hs-7": "duty_desk"}}
    (hall_dir / "hallhub.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    from hub.config import load_config

    service = HubService(load_config(hall_dir / "hallhub.yaml"))
    await service.start()
    handset = Account(secured_broker.port, "crew-duty_desk", passwords(hall_dir)["crew-duty_desk"])
    try:
        alert = await service.alerts.raise_condition(
            "alarm-1", "toilet_call", "urgent", "duty_desk", "Toilet call", None
        )
        ack = f'{{"handset": "hs-7", "alert_id": {alert["alert_id"]}, "action": "ack"}}'

        def acknowledged() -> bool:
            handset.publish("crews/hall-east/crews/duty_desk/acks", ack.encode())
            with service.journal.reading() as conn:
                state = conn.execute(
                    "SELECT state FROM alerts WHERE alert_id = ?", (alert["alert_id"],)
                ).fetchone()[0]
            return bool(state == "acknowledged")

        await eventually(acknowledged, timeout=15)
    finally:
        handset.close()
        await service.stop()
