"""The disk bound on the backlog, on a real journal and a real receiver: telemetry over
its cap is compacted with a run tombstone and the lane stays contiguous at the city;
ratings are never dropped, only alerted on; short disk space raises an alert."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

from hub.clock import ManualClock, SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.backlog import ROW_OVERHEAD_BYTES, BacklogGuard, BacklogPolicy
from sync.city_store import SQLiteBatchStore
from sync.keys import HubKey
from sync.outbox import Outbox
from sync.receiver import BackgroundReceiver, create_app
from sync.uplink import Uplink

HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("11" * 32))
PAYLOAD = {"people": 12, "pad": "x" * 60}


async def fill(journal: Journal, lane: Lane, count: int) -> None:
    for n in range(1, count + 1):
        await journal.append(
            Observation(f"{lane.value}-{n:04d}", lane, "dev-1", "people_counter", "reading",
                        dict(PAYLOAD), float(n), True)
        )  # fmt: skip


def row_bytes(journal: Journal, lane: Lane) -> int:
    with journal.reading() as conn:
        (size,) = conn.execute(
            "SELECT LENGTH(data) + LENGTH(event_id) + LENGTH(device_id) FROM events"
            " WHERE lane = ? LIMIT 1",
            (lane.value,),
        ).fetchone()
    return int(size) + ROW_OVERHEAD_BYTES


class Alerts:
    def __init__(self) -> None:
        self.raised: list[tuple[str, str]] = []

    async def __call__(self, condition: str, message: str) -> None:
        self.raised.append((condition, message))


async def drain_to_city(journal: Journal, tmp_path: Path) -> Path:
    store = SQLiteBatchStore(tmp_path / "city.db")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(create_app(store, {KEY.key_id: KEY}), sock)
    receiver.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock(), 50) as uplink:
            while await uplink.drain_once():
                pass
    finally:
        receiver.stop()
        store.close()
    return tmp_path / "city.db"


def city_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


async def test_telemetry_over_its_cap_is_compacted_and_ratings_never_dropped(
    journal: Journal, tmp_path: Path
) -> None:
    """With 100 telemetry events against a cap of 40 and 30 ratings against a cap of 10,
    the oldest telemetry is compacted to fit with one run tombstone, every rating stays
    and an alert says the rating lane is over its cap. Drained afterwards, the city has
    every rating, the newest telemetry, and a tombstone covering the compacted run, with
    both lanes contiguous."""
    await fill(journal, Lane.TELEMETRY, 100)
    await fill(journal, Lane.RATING, 30)
    size = row_bytes(journal, Lane.TELEMETRY)
    policy = BacklogPolicy({Lane.TELEMETRY: 40 * size, Lane.RATING: 10 * size}, 0)
    alerts = Alerts()
    guard = BacklogGuard(journal, policy, ManualClock(), alerts, free_bytes=lambda: 10**12)

    report = await guard.check()
    (compaction,) = report["compacted"]
    after = await guard.check()
    with journal.reading() as conn:
        (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
    city = await drain_to_city(journal, tmp_path)

    assert (compaction.first_seq, compaction.last_seq, compaction.events) == (1, 60, 60)
    assert free_pages == 0  # the compacted space went back to the disk, not to a free list
    assert after["backlog_bytes"][Lane.TELEMETRY] <= 40 * size
    assert after["compacted"] == []
    assert [c for c, _ in alerts.raised] == ["backlog_over_cap:rating"] * 2
    assert city_rows(city, "SELECT COUNT(*) FROM events WHERE lane = 'rating'") == [(30,)]
    telemetry = city_rows(city, "SELECT seq FROM events WHERE lane = 'telemetry' ORDER BY seq")
    assert [seq for (seq,) in telemetry] == list(range(61, 101))
    assert city_rows(city, "SELECT seq, through_seq, disposition FROM tombstones") == [
        (1, 60, "compacted")
    ]
    assert city_rows(city, "SELECT lane, hwm FROM lane_marks ORDER BY lane") == [
        ("rating", 30),
        ("telemetry", 100),
    ]


async def test_short_disk_space_alerts_and_compacts_harder(journal: Journal) -> None:
    """Below the free-space threshold an alert is raised and telemetry is compacted to
    half its cap, while the alarm lane is left whole."""
    await fill(journal, Lane.TELEMETRY, 40)
    await fill(journal, Lane.ALARM, 5)
    size = row_bytes(journal, Lane.TELEMETRY)
    policy = BacklogPolicy({Lane.TELEMETRY: 40 * size}, alert_free_bytes=100 * 1024 * 1024)
    alerts = Alerts()
    guard = BacklogGuard(journal, policy, ManualClock(), alerts, free_bytes=lambda: 1024 * 1024)

    report = await guard.check()

    assert [c for c, _ in alerts.raised] == ["disk_space_short"]
    assert report["compacted"][0].events == 20
    with journal.reading() as conn:
        counts = dict(conn.execute("SELECT lane, COUNT(*) FROM events GROUP BY lane").fetchall())
    assert counts == {"telemetry": 20, "alarm": 5}


async def test_compacted_run_partly_acknowledged_leaves_no_gap(
    journal: Journal, tmp_path: Path
) -> None:
    """If events inside a compacted run were acknowledged (sent just before they were
    compacted), the run tombstone is cut to start after the ack, so the city's lane has
    no gap and nothing is repeated."""
    await fill(journal, Lane.TELEMETRY, 50)
    size = row_bytes(journal, Lane.TELEMETRY)
    guard = BacklogGuard(
        journal, BacklogPolicy({Lane.TELEMETRY: 10 * size}, 0), ManualClock(), Alerts(),
        free_bytes=lambda: 10**12,
    )  # fmt: skip
    await guard.check()
    await Outbox(journal).record_acks({Lane.TELEMETRY: 25}, 1.0)

    city = await drain_to_city(journal, tmp_path)

    assert city_rows(city, "SELECT seq, through_seq FROM tombstones") == [(26, 40)]
    assert city_rows(city, "SELECT hwm FROM lane_marks") == [(50,)]
