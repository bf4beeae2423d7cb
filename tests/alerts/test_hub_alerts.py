"""Alerts in the whole hub: a real device message, routing, escalation on a manual clock."""

from __future__ import annotations

from pathlib import Path

from hub.broker import ManagedBroker
from hub.clock import ManualClock
from hub.service import HubService
from tests.alerts.conftest import DEVICES
from tests.alerts.kit import rows
from tests.hubkit import DeviceClient, Listener, eventually, hub_config


async def test_routed_call_escalates_to_the_crew_lead_topic_after_a_minute(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A press goes to the routed team's topic; unanswered for 60 s, to the crew lead's."""
    root = unique_topic_root.replace("/", "-")
    routes = {"routes": [{"kind": "toilet_alarm", "floor": 1, "team": "desk_f1"}]}
    clock = ManualClock()
    config = hub_config(tmp_path / "hub", broker.port, root, DEVICES, alerts=routes)
    hub = HubService(config, clock=clock)
    await hub.start()
    assert hub.ingest.wait_connected(10) and hub.ingest.wait_subscribed(10)
    crews = Listener(broker.port, f"{hub.config.mqtt.crew_topic_root}/#")
    device = DeviceClient(broker.port, "alarm-under-test")
    try:
        device.publish(f"{root}/alarm-1/call", {"source": "cord"})
        await eventually(lambda: crews.messages)
        await clock.advance(59)
        await hub.alerts.tick()
        early = rows(hub.journal, "SELECT escalation_step FROM alerts")
        await clock.advance(1)
        await hub.alerts.tick()
        await eventually(lambda: len(crews.messages) >= 2)
    finally:
        device.close()
        crews.close()
        await hub.stop()

    topics = [topic.rsplit("/", 2)[-2] for topic, *_ in crews.messages]
    assert early == [{"escalation_step": 0}]
    assert topics[:2] == ["desk_f1", "crew_lead"]
    assert crews.messages[1][1]["event"] == "escalated"
