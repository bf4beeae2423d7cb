"""Retain-As-Published off: only what the broker replays at subscribe counts as replay."""

from __future__ import annotations

from pathlib import Path

from hub.broker import ManagedBroker
from hub.service import HubService
from tests.hubkit import DeviceClient, eventually, hub_config

DEVICES = [{"id": "alarm-r", "model": "toilet-alarm-ta1", "zone": "1F accessible toilet"}]


async def test_a_live_call_published_retained_is_still_a_new_press(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A call a (misconfigured) alarm publishes with the retain flag while the hub is
    subscribed reaches the hub with the flag cleared, so it opens the alert; only a
    replay at subscribe time is marked retained (see test_hub_service)."""
    root = unique_topic_root.replace("/", "-")
    hub = HubService(hub_config(tmp_path / "hub", broker.port, root, DEVICES))
    device = DeviceClient(broker.port, "retained-alarm")
    await hub.start()
    try:
        assert hub.ingest.wait_subscribed(10)
        device.publish(f"{root}/alarm-r/call", {"source": "cord"}, retain=True)

        def call_alerts() -> int:
            with hub.journal.reading() as conn:
                sql = "SELECT COUNT(*) FROM alerts WHERE device_id = 'alarm-r'"
                return int(conn.execute(sql).fetchone()[0])

        await eventually(call_alerts)
        with hub.journal.reading() as conn:
            flags = [
                tuple(r) for r in conn.execute("SELECT retained FROM events WHERE type = 'call'")
            ]
        assert flags == [(0,)]
    finally:
        device.client.publish(f"{root}/alarm-r/call", b"", qos=1, retain=True).wait_for_publish(5)
        device.close()
        await hub.stop()
