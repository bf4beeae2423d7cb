"""Disk full, on a small ext4 filesystem of the test's own (loop device).

The hub's state folder lives on a 48 MiB filesystem. With the city away, the
backlog grows; when the disk runs short the hub raises an alert and sheds
telemetry (compacted behind a tombstone), keeps every rating and alarm, and once
the disk is full to the last byte and then freed again, nothing that devices
published in between is lost or doubled.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.broker import ManagedBroker
from hub.clock import ManualClock
from hub.service import HubService
from sync.keys import add_key
from tests.conftest import free_port
from tests.faults.kit import HallPublisher, hall_devices, small_filesystem, stored_ids
from tests.hubkit import eventually, hub_config

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path, 48) as mounted:
        yield mounted


def fill_until_free(path: Path, keep_free: int) -> None:
    """Write `path` until the filesystem has at most `keep_free` bytes left."""
    chunk = b"\0" * MIB
    with path.open("ab") as filler:
        while True:
            stats = os.statvfs(path)
            free = stats.f_bavail * stats.f_frsize
            if free <= keep_free:
                return
            try:
                filler.write(chunk[: max(4096, min(MIB, free - keep_free))])
                filler.flush()
            except OSError:  # ENOSPC: as full as it gets
                return


async def test_full_disk_sheds_telemetry_keeps_ratings_and_alarms_alerts_and_recovers(
    tmp_path: Path, small_disk: Path, fresh_broker: ManagedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Short disk: alert and telemetry compacted, ratings and alarms all kept; a disk
    full to the last byte holds ingest, and when space returns every message published
    meanwhile is journaled exactly once."""
    key = add_key(tmp_path / "city-keys.json", "hall-test")
    (tmp_path / "city-secret").write_text(key.secret.hex())
    city = {"url": f"http://127.0.0.1:{free_port()}", "key_id": key.key_id,
            "secret_file": str(tmp_path / "city-secret"),
            "backlog_cap_mib": {"telemetry": 1, "health": 1}, "alert_free_mib": 12}  # fmt: skip
    devices = hall_devices(5, ("occupancy-sensor-os1",)) + hall_devices(3, ("rating-pad-rp5",
               "toilet-alarm-ta1"))  # fmt: skip
    config = hub_config(small_disk / "hub", fresh_broker.port, "hall", devices, city=city)
    clock = ManualClock()
    hub = HubService(config, clock=clock)
    await hub.start()
    assert hub.ingest.wait_subscribed(10)
    telemetry = HallPublisher(fresh_broker.port, "hall", devices[:5])
    kept = HallPublisher(fresh_broker.port, "hall", devices[5:])
    journal = small_disk / "hub" / "journal.sqlite3"
    filler = small_disk / "filler"
    try:
        for _ in range(1400):  # 7,000 readings: over half the 1 MiB telemetry cap
            telemetry.publish_round()
        for _ in range(20):
            kept.publish_round()
        telemetry.wait_acknowledged()
        kept.wait_acknowledged()
        must_keep = kept.event_ids()
        await eventually(lambda: must_keep <= set(stored_ids(journal)), timeout=60)
        await eventually(lambda: telemetry.event_ids() <= set(stored_ids(journal)), timeout=60)

        fill_until_free(filler, 6 * MIB)  # under alert_free_mib: short of space
        await clock.advance(61)  # the backlog guard's next round
        await eventually(lambda: open_alerts(journal, "disk_space_short"), timeout=20)
        await eventually(lambda: compacted_events(journal) > 0, timeout=20)

        fill_until_free(filler, 0)  # full to the last byte
        for _ in range(400):  # more than the pages compaction freed
            kept.publish_round()
        kept.wait_acknowledged()
        await eventually(lambda: "database or disk is full" in caplog.text, timeout=30)
        filler.unlink()  # space returns

        must_keep = kept.event_ids()
        await until(clock, lambda: must_keep <= set(stored_ids(journal)))
    finally:
        telemetry.close()
        kept.close()
        await hub.stop()

    stored = stored_ids(journal)
    assert all(stored[event_id] == 1 for event_id in must_keep), "a rating or alarm doubled"
    shed = telemetry.event_ids() - set(stored)
    assert shed, "no telemetry was shed"
    assert compacted_events(journal) == len(shed), "shed telemetry without its tombstone"
    assert hub.ingest.connections >= 1


async def until(clock: ManualClock, check: Callable[[], bool], timeout: float = 60) -> None:
    """Wait for `check`, moving the hub's clock on so its retry timers fire."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await clock.advance(5)
        await asyncio.sleep(0.05)


def open_alerts(journal: Path, condition: str) -> int:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM alerts WHERE condition = ? AND resolved_at IS NULL", (condition,)
        ).fetchone()
        return int(count)
    finally:
        conn.close()


def compacted_events(journal: Path) -> int:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT COALESCE(SUM(events), 0) FROM sync_compacted").fetchone()
        return int(count)
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
