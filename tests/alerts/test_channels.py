"""Delivery on every channel against servers the test runs; a dead channel blocks none."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hub.broker import ManagedBroker
from hub.metrics import REGISTRY
from tests.alerts.conftest import running_hub
from tests.alerts.kit import rows
from tests.alerts.servers import simulated_modem, smtp_server, webhook_receiver
from tests.conftest import free_port
from tests.hubkit import Listener, eventually

DESK_PHONE = "+8613800000001"


def _count(channel: str, state: str) -> float:
    labels = {"channel": channel, "state": state}
    return REGISTRY.get_sample_value("hallhub_alert_deliveries_total", labels) or 0.0


def _alerts_section(modem_port: str, smtp_port: int, webhook: str) -> dict[str, object]:
    return {
        "modem": {"port": modem_port, "timeout": 2},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "hub@hall.local"},
        "retry": {"attempts": 3, "first_delay": 0.05, "max_delay": 0.2},
        "teams": {
            "duty_desk": {
                "sms": [DESK_PHONE],
                "webhooks": [webhook],
                "email": ["desk@hall.local"],
            }
        },
    }


async def test_an_urgent_call_reaches_mqtt_sms_webhook_and_email(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """One toilet call pages the desk on all four channels; each outcome is recorded."""
    with (
        simulated_modem(tmp_path) as (modem_port, modem),
        smtp_server() as (smtp_port, mail),
        webhook_receiver() as (hook_port, posts),
    ):
        section = _alerts_section(modem_port, smtp_port, f"json://127.0.0.1:{hook_port}/robot")
        hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, section)
        crews = Listener(broker.port, hub.crews.team_topic("duty_desk"))
        try:
            call = await hub.alerts.raise_condition(
                "alarm-1", "toilet_call", "urgent", "duty_desk", "Toilet call at alarm-1", None
            )
            await hub.crews.dispatcher.drain()
            await eventually(lambda: crews.messages)
            deliveries = rows(
                hub.journal,
                "SELECT channel, state, attempts FROM alert_deliveries WHERE team = 'duty_desk'",
            )
        finally:
            crews.close()
            await hub.stop()

    assert sorted(d["channel"] for d in deliveries) == ["email", "mqtt", "sms", "webhook"]
    assert all(d["state"] == "delivered" and d["attempts"] == 1 for d in deliveries)
    assert crews.messages[0][1]["alert_id"] == call["alert_id"]
    alert_id = call["alert_id"]
    text = f"[urgent] #{alert_id} opened: Toilet call at alarm-1 - reply ACK {alert_id}"
    assert modem.sent == [(DESK_PHONE, text)]
    assert posts[0]["path"] == "/robot" and "Toilet call" in posts[0]["body"]["message"]
    assert mail[0][1] == ["desk@hall.local"] and "Toilet call" in mail[0][2]


async def test_wan_down_webhook_and_email_fail_while_sms_and_mqtt_deliver(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """With the internet channels unreachable, retries are recorded and local pages go out."""
    dead_port = free_port()  # nothing listens here: the "WAN" is down
    failed_before = _count("webhook", "failed")
    with simulated_modem(tmp_path) as (modem_port, modem):
        section = _alerts_section(modem_port, dead_port, f"json://127.0.0.1:{dead_port}/robot")
        hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, section)
        crews = Listener(broker.port, hub.crews.team_topic("duty_desk"))
        try:
            await hub.alerts.raise_condition(
                "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
            )
            await eventually(lambda: crews.messages and modem.sent)
            await hub.crews.dispatcher.drain()
            deliveries = {
                d["channel"]: d
                for d in rows(
                    hub.journal, "SELECT * FROM alert_deliveries WHERE team = 'duty_desk'"
                )
            }
        finally:
            crews.close()
            await hub.stop()

    assert deliveries["mqtt"]["state"] == "delivered"
    assert deliveries["sms"]["state"] == "delivered"
    for internet in ("webhook", "email"):
        assert deliveries[internet]["state"] == "failed"
        assert deliveries[internet]["attempts"] == 3
        assert deliveries[internet]["last_error"] == "refused or unreachable"
    assert deliveries["sms"]["attempts"] == 1 and deliveries["mqtt"]["attempts"] == 1
    assert _count("webhook", "failed") == failed_before + 1


async def test_a_failing_modem_is_retried_and_recorded_without_blocking_mqtt(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A modem answering ERROR fails SMS after its retries; the MQTT page still arrives."""
    with simulated_modem(tmp_path) as (modem_port, modem):
        section = _alerts_section(modem_port, free_port(), "json://127.0.0.1:1/none")
        section["teams"] = {"duty_desk": {"sms": [DESK_PHONE]}}
        hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, section)
        modem.failing = True
        crews = Listener(broker.port, hub.crews.team_topic("duty_desk"))
        try:
            await hub.alerts.raise_condition(
                "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
            )
            await hub.crews.dispatcher.drain()
            await eventually(lambda: crews.messages)
            sms = rows(hub.journal, "SELECT * FROM alert_deliveries WHERE channel = 'sms'")
        finally:
            crews.close()
            await hub.stop()

    assert sms[0]["state"] == "failed" and sms[0]["attempts"] == 3
    assert "ERROR" in sms[0]["last_error"]
    assert modem.sent == []


async def test_chinese_page_goes_as_ucs2_sms(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A page in Chinese reaches the phone intact (UCS-2), and the modem is back in GSM."""
    with simulated_modem(tmp_path) as (modem_port, modem):
        section = _alerts_section(modem_port, free_port(), "json://127.0.0.1:1/none")
        section["teams"] = {"duty_desk": {"sms": [DESK_PHONE]}}
        hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, section)
        try:
            first = await hub.alerts.raise_condition(
                "alarm-1", "toilet_call", "urgent", "duty_desk", "一楼无障碍卫生间呼叫", None
            )
            await eventually(lambda: modem.sent)
            second = await hub.alerts.raise_condition(
                "pad-1", "stuck", "urgent", "duty_desk", "Pad stuck", None
            )
            await eventually(lambda: len(modem.sent) == 2)
        finally:
            await hub.stop()

    assert modem.sent[0] == (
        DESK_PHONE,
        f"[urgent] #{first['alert_id']} opened: 一楼无障碍卫生间呼叫"
        f" - reply ACK {first['alert_id']}",
    )
    assert modem.sent[1][1].startswith(f"[urgent] #{second['alert_id']} opened: Pad stuck")


async def test_webhook_secret_stays_out_of_the_logs_even_at_debug(
    broker: ManagedBroker,
    tmp_path: Path,
    unique_topic_root: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing webhook is logged by host only; its secret path never appears."""
    secret = "robot-key-7f3a9c"
    dead = free_port()
    section = _alerts_section("/nonexistent/tty", dead, f"json://127.0.0.1:{dead}/{secret}")
    section.pop("modem")
    section["retry"] = {"attempts": 1, "first_delay": 0.05, "max_delay": 0.05}
    caplog.set_level(logging.DEBUG)
    hub = await running_hub(broker, tmp_path / "hub", unique_topic_root, section)
    try:
        await hub.alerts.raise_condition("alarm-1", "toilet_call", "urgent", "duty_desk", "c", None)
        await hub.crews.dispatcher.drain()
        stored = rows(hub.journal, "SELECT target FROM alert_deliveries WHERE channel = 'webhook'")
    finally:
        await hub.stop()

    assert "webhook to json://127.0.0.1:" in caplog.text
    assert secret not in caplog.text
    assert secret not in stored[0]["target"]
