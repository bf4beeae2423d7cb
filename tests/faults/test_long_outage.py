"""A city outage of three days, compressed with the hub's ManualClock.

A hall publishes every six hours of wall time for 72 hours while the city receiver
is down (its port refuses connections); occupancy readings come fast enough to
pass the telemetry cap. Each six hours moves the wall clock by six hours and the
monotonic clock by two minutes, enough for the backlog guard and the uplink's
retries to run, without replaying every one-second tick of three days. Then the
city comes back. Ratings, alarms and tickets must arrive exactly once and in each
lane's order; telemetry follows the disk policy: what
is over the cap is compacted, and the city sees the lane contiguous, events and
tombstones together, up to the hub's last seq.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from pathlib import Path

from hub.broker import ManagedBroker
from hub.clock import ManualClock
from hub.service import HubService
from sync.city_store import SQLiteBatchStore
from sync.keys import add_key
from sync.receiver import BackgroundReceiver, create_app
from tests.faults.kit import HallPublisher, hall_devices, lane_seqs, stored_ids
from tests.hubkit import hub_config
from tests.rulekit import advance, wall_at

HOURS = 72
KEPT_LANES = ("rating", "alarm", "ticket")


def covered_seqs(city: Path, lane: str) -> list[int]:
    """Seqs of `lane` at the city, from its events and the runs its tombstones stand for."""
    conn = sqlite3.connect(f"file:{city}?mode=ro", uri=True)
    try:
        runs = conn.execute("SELECT seq, through_seq FROM tombstones WHERE lane = ?", (lane,))
        tombstoned = [seq for first, last in runs for seq in range(first, last + 1)]
    finally:
        conn.close()
    return sorted(lane_seqs(city, lane) + tombstoned)


def journal_order(journal: Path, lane: str) -> list[str]:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT event_id FROM events WHERE lane = ? ORDER BY seq", (lane,))
        return [row[0] for row in rows]
    finally:
        conn.close()


async def test_three_day_city_outage_delivers_every_kept_event_once_in_lane_order(
    tmp_path: Path, fresh_broker: ManagedBroker
) -> None:
    """72 compressed hours without the city: afterwards ratings, alarms and tickets are
    at the city once each in lane order; telemetry was compacted to its cap with
    tombstones and its lane is contiguous at the city."""
    key = add_key(tmp_path / "city-keys.json", "hall-test")
    (tmp_path / "city-secret").write_text(key.secret.hex())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    city_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    city = {"url": city_url, "key_id": key.key_id, "secret_file": str(tmp_path / "city-secret"),
            "backlog_cap_mib": {"telemetry": 1, "health": 1}}  # fmt: skip
    kept_devices = hall_devices(2, ("rating-pad-rp5", "toilet-alarm-ta1", "ticket-printer-tp80"))
    sensors = hall_devices(4, ("occupancy-sensor-os1",))
    config = hub_config(tmp_path / "hub", fresh_broker.port, "hall", kept_devices + sensors,
                        city=city)  # fmt: skip
    clock = ManualClock(wall=wall_at("2026-03-02 08:00"))
    hub = HubService(config, clock=clock)
    await hub.start()
    assert hub.ingest.wait_subscribed(10)
    kept = HallPublisher(fresh_broker.port, "hall", kept_devices)
    telemetry = HallPublisher(fresh_broker.port, "hall", sensors)
    store = SQLiteBatchStore(tmp_path / "city.db")
    receiver = BackgroundReceiver(create_app(store, {key.key_id: key}), sock)
    journal = tmp_path / "hub" / "journal.sqlite3"
    try:
        for _quarter_day in range(HOURS // 6):
            kept.publish_round()
            for _ in range(180):
                telemetry.publish_round()
            telemetry.wait_acknowledged()
            # Six hours of wall time pass; the hub's periodic work (backlog guard, uplink
            # retries) gets two minutes of its monotonic clock, not 21,600 one-second ticks.
            clock.jump_wall(6 * 3600 - 120)
            await advance(clock, 120, step=30)
        kept.wait_acknowledged()
        must_arrive = kept.event_ids()
        await wait_for(lambda: must_arrive <= set(stored_ids(journal)))
        await advance(clock, 120, step=60)  # a last round of the backlog guard

        receiver.start()  # the city is back
        await wait_for(lambda: delivered(tmp_path / "city.db", journal), clock=clock)
    finally:
        kept.close()
        telemetry.close()
        await hub.stop()
        receiver.stop()
        store.close()

    at_city = stored_ids(tmp_path / "city.db")
    assert must_arrive <= set(at_city) and max(at_city.values()) == 1
    for lane in KEPT_LANES:
        city_order = [event_id for event_id in journal_order(tmp_path / "city.db", lane)]
        assert city_order == journal_order(journal, lane), f"{lane} out of order or incomplete"
        assert lane_seqs(tmp_path / "city.db", lane) == list(range(1, len(city_order) + 1))
    published = telemetry.event_ids()
    shed = published - set(at_city)
    assert shed, "the telemetry cap was never reached: the test proves nothing"
    seqs = covered_seqs(tmp_path / "city.db", "telemetry")
    assert seqs == list(range(1, len(seqs) + 1)), "telemetry has gaps at the city"


def delivered(city: Path, journal: Path) -> bool:
    """Whether the city holds every lane up to the hub's last seq."""
    for lane in (*KEPT_LANES, "telemetry"):
        wanted = lane_seqs(journal, lane)
        if not wanted:
            continue
        try:
            covered = covered_seqs(city, lane)
        except sqlite3.OperationalError:
            return False
        if not covered or covered[-1] < wanted[-1]:
            return False
    return True


async def wait_for(check: object, clock: ManualClock | None = None, timeout: float = 90) -> None:
    """Wait for `check()`; with a clock, move it on so the uplink's backoff ends."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        if clock is not None:
            await clock.advance(30)
        await asyncio.sleep(0.1)
