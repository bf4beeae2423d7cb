"""The broker restarted under the hub while a hall publishes: gracefully and by kill -9.

Extends tests/test_mqtt_field.py (one pad, publishing between restarts) to ingest
that goes on during the restart, from 30 devices of every kind. The hub must get
its subscription back each time, and lose exactly what the README says: nothing
on a graceful restart; on a kill -9, at most what reached the broker after its
last save, and nothing it had saved.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.broker import ManagedBroker
from hub.config import HubConfig
from hub.service import HubService
from tests.conftest import LOOPBACK, free_port
from tests.faults.kit import HallPublisher, hall_devices, stored_ids
from tests.hubkit import eventually, hub_config

DEVICES = hall_devices(8)
SAVED = "Saving in-memory database"


class Feeder:
    """A hall publishing in the background until stopped."""

    def __init__(self, port: int) -> None:
        self.publisher = HallPublisher(port, "hall", DEVICES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.publisher.publish_round()
            time.sleep(0.05)

    def stop(self) -> set[str]:
        """Stop, wait for every PUBACK; the event ids the broker acknowledged."""
        self._stop.set()
        self._thread.join()
        self.publisher.wait_acknowledged()
        self.publisher.close()
        return self.publisher.event_ids()


@pytest.fixture
def saving_broker(tmp_path: Path) -> Iterator[ManagedBroker]:
    """A broker of the test's own that saves its store every second."""
    broker = ManagedBroker(tmp_path / "broker", LOOPBACK, free_port(), autosave_interval=1)
    broker.start()
    yield broker
    broker.stop()


async def started(config: HubConfig) -> HubService:
    hub = HubService(config)
    await hub.start()
    assert hub.ingest.wait_subscribed(10), "the hub never got its subscription confirmed"
    return hub


def journal_of(config: HubConfig) -> Path:
    return config.hub.state_dir / "journal.sqlite3"


async def test_graceful_broker_restart_during_ingest_loses_nothing(
    tmp_path: Path, saving_broker: ManagedBroker
) -> None:
    """SIGTERM to the broker mid-ingest: the hub subscribes again, and every message
    the broker acknowledged, before, across and after the restart, is journaled once."""
    config = hub_config(tmp_path / "hub", saving_broker.port, "hall", DEVICES)
    hub = await started(config)
    try:
        feeder = Feeder(saving_broker.port)
        await asyncio.sleep(1)
        saving_broker.restart()
        await eventually(lambda: hub.ingest.connections >= 2, timeout=20)
        await asyncio.sleep(1)
        published = feeder.stop()
        await eventually(lambda: published <= set(stored_ids(journal_of(config))), timeout=30)
    finally:
        await hub.stop()

    journaled = stored_ids(journal_of(config))
    assert all(journaled[event_id] == 1 for event_id in published)


async def test_broker_kill_during_ingest_loses_at_most_what_came_after_its_last_save(
    tmp_path: Path, saving_broker: ManagedBroker
) -> None:
    """kill -9 of the broker mid-ingest: what it acknowledged before its last save is
    all journaled, ingest resumes on the same subscription, and any loss is confined
    to what arrived between that save and the kill."""
    config = hub_config(tmp_path / "hub", saving_broker.port, "hall", DEVICES)
    hub = await started(config)
    try:
        feeder = Feeder(saving_broker.port)
        await asyncio.sleep(1)
        before_save = feeder.publisher.event_ids()
        saves = saving_broker.log_path.read_text().count(SAVED)
        await eventually(lambda: saving_broker.log_path.read_text().count(SAVED) > saves + 1)
        at_kill = feeder.publisher.event_ids()
        saving_broker.kill()
        saving_broker.start()
        await eventually(lambda: hub.ingest.connections >= 2, timeout=20)
        await asyncio.sleep(1)
        published = feeder.stop()
        after_restart = published - at_kill
        await eventually(lambda: after_restart <= set(stored_ids(journal_of(config))), 60)
        await eventually(lambda: before_save <= set(stored_ids(journal_of(config))), 60)
    finally:
        await hub.stop()

    journaled = stored_ids(journal_of(config))
    lost = published - set(journaled)
    assert lost <= at_kill - before_save, "lost a message the broker had saved"
    assert all(journaled[event_id] == 1 for event_id in published if event_id in journaled)
    assert after_restart, "nothing was published after the restart"
