"""The disk bound: compaction must never make the hub issue a sequence number twice.

Real parts only: a real journal (closed and opened again, as a hub restart does), the
real backlog guard, the reference receiver over HTTP on loopback with SQLite.
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

from hub.clock import ManualClock, SystemClock
from hub.config import CitySection
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.backlog import BacklogGuard, BacklogPolicy
from sync.city_store import SQLiteBatchStore
from sync.keys import HubKey
from sync.receiver import BackgroundReceiver, create_app
from sync.uplink import Uplink

HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("33" * 32))


def reading(n: int) -> Observation:
    return Observation(
        f"reading-{n}", Lane.TELEMETRY, "pc-1", "people_counter", "reading", {"people": n},
        float(n), True,
    )  # fmt: skip


async def no_alert(condition: str, message: str) -> None:
    return None


async def test_new_events_after_the_whole_backlog_was_compacted_reach_the_city(
    tmp_path: Path,
) -> None:
    """A telemetry cap of 0 MiB is accepted by the configuration; with the city away,
    compaction then deletes every pending telemetry event, the newest included, and
    records the run 1-5. The journal takes its next seq from MAX(seq) of the events
    left, so after a restart the hub numbered new readings 1, 2, ... again: inside the
    compacted run. They were never sent (the run's tombstone stands for those seqs),
    and a reading the city never had was lost without a trace. Retention keeps each
    lane's newest event for exactly this reason; compaction did not."""
    cap = CitySection.model_validate(
        {"url": "http://127.0.0.1:1", "keys_file": "k.json", "backlog_cap_mib": {"telemetry": 0}}
    ).backlog_cap_mib
    path = tmp_path / "hub.db"
    journal = Journal(path, HUB)
    journal.open()
    try:
        for n in range(1, 6):
            await journal.append(reading(n))
        policy = BacklogPolicy({lane: mib * 1024 * 1024 for lane, mib in cap.items()}, 0)
        await BacklogGuard(
            journal, policy, ManualClock(), no_alert, free_bytes=lambda: 10**12
        ).check()
    finally:
        journal.close()

    journal = Journal(path, HUB)  # the hub restarts
    journal.open()
    store = SQLiteBatchStore(tmp_path / "city.db")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(create_app(store, {KEY.key_id: KEY}), sock)
    receiver.start()
    try:
        fresh = await journal.append(reading(6))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock()) as uplink:
            while await uplink.drain_once():
                pass
        stored = {
            row[0]
            for row in sqlite3.connect(tmp_path / "city.db").execute(
                "SELECT event_id FROM events WHERE lane = 'telemetry'"
            )
        }
    finally:
        receiver.stop()
        store.close()
        journal.close()

    assert "reading-6" in stored, f"the new reading (seq {fresh.event.seq}) was lost"
    assert fresh.event.seq > 5, f"seq {fresh.event.seq} was already compacted away"
