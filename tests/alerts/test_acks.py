"""Acknowledging from a handset over MQTT and by SMS reply; outsiders are refused."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt

from hub.alerts.acks import parse_reply
from hub.broker import ManagedBroker
from hub.service import HubService
from tests.alerts.conftest import running_hub
from tests.alerts.kit import rows
from tests.alerts.servers import simulated_modem
from tests.hubkit import eventually

HANDSETS = {"hs-desk-1": "duty_desk", "hs-maint-1": "maintenance"}
DESK_PHONE = "+8613800000001"


def _handset_publish(port: int, topic: str, body: dict[str, object] | bytes) -> None:
    handset = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="handset-under-test")
    handset.connect("127.0.0.1", port)
    handset.loop_start()
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    handset.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
    handset.disconnect()
    handset.loop_stop()


def _acks_topic(hub: HubService, team: str) -> str:
    return hub.crews.team_topic(team).removesuffix("/alerts") + "/acks"


def _state(hub: HubService, alert_id: int) -> dict[str, object]:
    return rows(hub.journal, "SELECT * FROM alerts WHERE alert_id = ?", alert_id)[0]


async def test_handset_in_the_team_acknowledges_over_mqtt(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A desk handset publishing an ack on the desk's topic acknowledges the call."""
    hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, {"handsets": HANDSETS})
    try:
        call = await hub.alerts.raise_condition(
            "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
        )
        body = {"handset": "hs-desk-1", "alert_id": call["alert_id"], "action": "ack"}
        _handset_publish(broker.port, _acks_topic(hub, "duty_desk"), body)
        acked = await eventually(lambda: _state(hub, call["alert_id"])["state"] == "acknowledged")
        alert = _state(hub, call["alert_id"])
    finally:
        await hub.stop()

    assert acked and alert["acknowledged_by"] == "mqtt:hs-desk-1"


async def test_handset_outside_the_team_is_refused_and_the_refusal_kept(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A maintenance handset, or an unknown one, cannot acknowledge the desk's call."""
    hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, {"handsets": HANDSETS})
    try:
        call = await hub.alerts.raise_condition(
            "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
        )
        alert_id = call["alert_id"]
        topic = _acks_topic(hub, "duty_desk")
        for handset in ("hs-maint-1", "hs-stolen"):
            body = {"handset": handset, "alert_id": alert_id, "action": "ack"}
            _handset_publish(broker.port, topic, body)
        _handset_publish(broker.port, topic, b"\xff not json")
        await eventually(lambda: len(rows(hub.journal, "SELECT * FROM alert_ack_refusals")) == 3)
        refusals = rows(hub.journal, "SELECT * FROM alert_ack_refusals")
        alert = _state(hub, alert_id)
    finally:
        await hub.stop()

    assert alert["state"] == "open"
    reasons = [r["reason"] for r in refusals]
    assert "handset hs-maint-1 belongs to maintenance, not duty_desk" in reasons
    assert "handset hs-stolen is in no team" in reasons
    assert "not an acknowledgement" in reasons


async def test_sms_reply_acknowledges_and_a_stranger_is_refused(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """'ACK <id>' from the desk's phone acknowledges; the same from an unknown number not.

    The inbox poll is an hour apart here, so the replies are read because the modem
    announced them (+CMTI).
    """
    with simulated_modem(tmp_path) as (modem_port, modem):
        section = {
            "modem": {"port": modem_port, "timeout": 2, "poll_interval": 3600},
            "teams": {"duty_desk": {"sms": [DESK_PHONE]}},
        }
        hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, section)
        try:
            call = await hub.alerts.raise_condition(
                "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
            )
            await eventually(lambda: modem.sent)
            modem.deliver_reply("+8613999999999", f"ACK {call['alert_id']}")
            await eventually(lambda: rows(hub.journal, "SELECT * FROM alert_ack_refusals"))
            modem.deliver_reply(DESK_PHONE, "on my way")
            await eventually(
                lambda: len(rows(hub.journal, "SELECT * FROM alert_ack_refusals")) == 2
            )
            modem.deliver_reply(DESK_PHONE, f"ack {call['alert_id']}")
            await eventually(lambda: _state(hub, call["alert_id"])["state"] == "acknowledged")
            alert = _state(hub, call["alert_id"])
            refusal = rows(hub.journal, "SELECT * FROM alert_ack_refusals")
        finally:
            await hub.stop()

    assert alert["acknowledged_by"] == f"sms:{DESK_PHONE}"
    assert refusal[0]["sender"] == "+8613999999999"
    assert "not a number of a team paged" in refusal[0]["reason"]
    assert refusal[1]["raw"] == "on my way" and "not ACK <id>" in refusal[1]["reason"]


def test_sms_reply_forms() -> None:
    """Replies people actually type are understood; anything else is not guessed at."""
    assert parse_reply("ACK 12") == ("ack", 12)
    assert parse_reply(" ok #7 ") == ("ack", 7)
    assert parse_reply("Resolve 3") == ("resolve", 3)
    assert parse_reply("ACK") is None
    assert parse_reply("ACK 12 and 13") is None
