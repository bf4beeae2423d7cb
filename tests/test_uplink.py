"""The uplink against a real journal file and a real receiver over HTTP: every event
arrives once and in lane order, through outages, lost acks, a wrong hub clock and a
restart of the uplink, with alarms ahead of telemetry and the backlog reported."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.clock import ManualClock, SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.city_store import SQLiteBatchStore
from sync.commands import CommandChannel
from sync.errors import CityRejected, CityUnavailable
from sync.keys import HubKey
from sync.poison import DISPOSITION_BY_LANE, SetAside, set_aside_summary
from sync.receiver import BackgroundReceiver, create_app
from sync.uplink import BACKOFF_CAP_SECONDS, MAX_SET_ASIDE_IN_A_ROW, Uplink

HUB = "hall-1"
KEY = HubKey(key_id="hall-1.k1", hub_id=HUB, secret=bytes.fromhex("11" * 32))
OTHER_KEY = HubKey(key_id="hall-2.k1", hub_id="hall-2", secret=bytes.fromhex("22" * 32))


def bind_loopback(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class City:
    """A receiver on a fixed loopback port that refuses connections until started."""

    def __init__(self, tmp_path: Path) -> None:
        self.db_path = tmp_path / "city.db"
        self.store = SQLiteBatchStore(self.db_path)
        self.app = create_app(self.store, {KEY.key_id: KEY, OTHER_KEY.key_id: OTHER_KEY})
        self._sock: socket.socket | None = bind_loopback()
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._background: BackgroundReceiver | None = None

    def start(self) -> None:
        sock = self._sock or bind_loopback(self.port)
        self._background = BackgroundReceiver(self.app, sock)
        self._background.start()

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()
        self._background = None
        self._sock = None

    def close(self) -> None:
        self.stop()
        self.store.close()

    def set_faults(self, **knobs: object) -> None:
        for name, value in knobs.items():
            setattr(self.app.state.receiver.faults, name, value)

    def rows(self) -> list[tuple[str, int, str]]:
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute("SELECT lane, seq, event_id FROM events ORDER BY id").fetchall()
        conn.close()
        return [(lane, seq, event_id) for lane, seq, event_id in rows]

    def repeats(self) -> int:
        return sum(mark["repeats"] for mark in self.store.hub_status(HUB)["marks"])


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    city = City(tmp_path)
    yield city
    city.close()


async def append(journal: Journal, lane: Lane, count: int, start: int = 1) -> None:
    for n in range(start, start + count):
        await journal.append(
            Observation(
                event_id=f"{lane.value}-{n}",
                lane=lane,
                device_id="counter-1f-entrance",
                kind="people_counter",
                type="reading",
                data={"n": n},
                received_at=1_767_225_600.0 + n,
                clock_synchronised=True,
            )
        )


async def drain_all(uplink: Uplink) -> int:
    total = 0
    while sent := await uplink.drain_once():
        total += sent
    return total


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def backlog(uplink: Uplink) -> int:
    return sum(lane["backlog"] for lane in uplink.status().values())


def assert_each_once_in_order(rows: list[tuple[str, int, str]], expected: dict[Lane, int]) -> None:
    assert len({event_id for _, _, event_id in rows}) == len(rows)
    for lane, count in expected.items():
        assert [seq for name, seq, _ in rows if name == lane.value] == list(range(1, count + 1))


async def test_events_arrive_exactly_once_in_lane_order(journal: Journal, city: City) -> None:
    """Several batches carry every event once, each lane in seq order."""
    counts = {Lane.ALARM: 7, Lane.RATING: 5, Lane.TELEMETRY: 20}
    for lane, count in counts.items():
        await append(journal, lane, count)
    city.start()

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock(), 8) as uplink:
        sent = await drain_all(uplink)

    assert sent == 32
    assert_each_once_in_order(city.rows(), counts)
    assert city.repeats() == 0


async def test_alarms_go_before_telemetry(journal: Journal, city: City) -> None:
    """With both pending, a batch is filled with alarms first, whatever came first."""
    await append(journal, Lane.TELEMETRY, 5)
    await append(journal, Lane.ALARM, 3)
    city.start()

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock(), 4) as uplink:
        first = await uplink.drain_once()
        rows_after_first = city.rows()
        await drain_all(uplink)

    assert first == 4
    assert [(lane, seq) for lane, seq, _ in rows_after_first] == [
        ("alarm", 1),
        ("alarm", 2),
        ("alarm", 3),
        ("telemetry", 1),
    ]
    assert len(city.rows()) == 8


async def test_status_reports_backlog_per_lane(journal: Journal, city: City) -> None:
    """status() gives each lane's backlog, acked seq, ack time and last error."""
    await append(journal, Lane.ALARM, 5)
    await append(journal, Lane.TELEMETRY, 3)
    clock = ManualClock(wall=time.time())
    city.start()

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, clock, 4) as uplink:
        before = uplink.status()
        await uplink.drain_once()
        after = uplink.status()
        link = uplink.link_status()

    assert {lane: before[lane]["backlog"] for lane in ("alarm", "telemetry")} == {
        "alarm": 5,
        "telemetry": 3,
    }
    assert after["alarm"] == {
        "backlog": 1,
        "acked_seq": 4,
        "last_ack_at": clock.wall(),
        "last_error": None,
    }
    assert after["telemetry"]["backlog"] == 3
    assert after["rating"] == {
        "backlog": 0,
        "acked_seq": 0,
        "last_ack_at": None,
        "last_error": None,
    }
    assert link["state"] == "idle"


async def test_receiver_down_then_up(
    journal: Journal, city: City, caplog: pytest.LogCaptureFixture
) -> None:
    """With the city not yet listening, the uplink backs off and logs the outage once at
    ERROR; once the city is up everything arrives once, and recovery is logged."""
    await append(journal, Lane.ALARM, 3)
    await append(journal, Lane.HEALTH, 4)
    clock = ManualClock(wall=time.time())
    uplink = Uplink(journal, city.url, KEY.key_id, KEY.secret, clock, 2)
    caplog.set_level(logging.DEBUG, logger="sync.uplink")

    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        for failures in (1, 2, 3):
            await wait_for_failures(uplink, failures)
            await clock.advance(BACKOFF_CAP_SECONDS)
        await wait_for_failures(uplink, 4)
        lane_error = uplink.status()["alarm"]["last_error"]
        city.start()
        await clock.advance(BACKOFF_CAP_SECONDS)
        await wait_until(lambda: backlog(uplink) == 0)
    finally:
        await stop(task)

    assert "ConnectError" in lane_error
    assert_each_once_in_order(city.rows(), {Lane.ALARM: 3, Lane.HEALTH: 4})
    assert _levels(caplog, "city sync failing") == ["ERROR"]
    assert _levels(caplog, "city sync still failing") == ["DEBUG"] * 3
    assert _levels(caplog, "city sync recovered") == ["INFO"]
    assert uplink.status()["alarm"]["last_error"] is None


async def test_receiver_stopped_midway(journal: Journal, city: City) -> None:
    """Events journaled while the city is stopped arrive after it returns, none twice."""
    clock = ManualClock(wall=time.time())
    uplink = Uplink(journal, city.url, KEY.key_id, KEY.secret, clock, 3)
    journal.add_commit_listener(uplink.notify)
    city.start()

    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        await wait_until(lambda: uplink.link_status()["state"] == "idle")
        await append(journal, Lane.RATING, 4)
        await wait_until(lambda: backlog(uplink) == 0)
        city.stop()
        await append(journal, Lane.RATING, 5, start=5)
        await wait_for_failures(uplink, 1)
        city.start()
        await clock.advance(BACKOFF_CAP_SECONDS)
        await wait_until(lambda: backlog(uplink) == 0)
    finally:
        await stop(task)

    assert_each_once_in_order(city.rows(), {Lane.RATING: 9})


async def test_dropped_ack_is_resent_and_deduplicated(journal: Journal, city: City) -> None:
    """A batch stored but answered 500 is sent again; the city keeps one row per id."""
    await append(journal, Lane.TICKET, 6)
    city.start()
    city.set_faults(drop_ack=1.0)

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock()) as uplink:
        with pytest.raises(CityUnavailable):
            await uplink.drain_once()
        failed = uplink.status()["ticket"]
        city.set_faults(drop_ack=0.0)
        sent = await uplink.drain_once()

    assert failed["acked_seq"] == 0
    assert "HTTP 500" in failed["last_error"]
    assert sent == 6
    assert_each_once_in_order(city.rows(), {Lane.TICKET: 6})
    assert city.repeats() == 6


async def test_a_long_poll_held_open_teaches_no_clock_offset(journal: Journal, city: City) -> None:
    """The city stamps a long poll's reply when it ends, seconds after it was asked:
    on the same clock the hub must not take the hold time for a clock offset. The
    hub's clock is moved 8 s while the poll is held, as a long hold would move it."""
    city.start()
    clock = ManualClock(wall=time.time())
    uplink = Uplink(journal, city.url, KEY.key_id, KEY.secret, clock)
    channel = CommandChannel(uplink, city.url, KEY.hub_id, {}, clock)
    try:
        poll = asyncio.create_task(channel.poll_once(wait=0.5))
        await asyncio.sleep(0.2)  # the request is out; the receiver holds it
        clock.jump_wall(8.0)
        await poll
        offset = uplink.link_status()["clock_offset_seconds"]
    finally:
        await channel.aclose()
        await uplink.aclose()

    assert abs(offset) < 1.0


@pytest.mark.parametrize("skew", [3600.0, -3600.0])
async def test_hub_clock_an_hour_off_still_syncs(journal: Journal, city: City, skew: float) -> None:
    """A hub whose clock is an hour off learns the city's time from the 401 and syncs."""
    await append(journal, Lane.ALARM, 2)
    clock = ManualClock(wall=time.time() + skew)
    city.start()

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, clock) as uplink:
        sent = await uplink.drain_once()
        offset = uplink.link_status()["clock_offset_seconds"]

    assert sent == 2
    assert abs(offset + skew) < 5
    assert len(city.rows()) == 2


async def test_restarted_uplink_resumes_from_acked_seq(journal: Journal, city: City) -> None:
    """A new uplink on the same journal sends only what was never acknowledged."""
    await append(journal, Lane.ALARM, 5)
    city.start()
    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock()) as first:
        await drain_all(first)
    await append(journal, Lane.ALARM, 3, start=6)

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock()) as second:
        resumed = await second.drain_once()
        nothing = await second.drain_once()

    assert (resumed, nothing) == (3, 0)
    assert city.repeats() == 0
    assert_each_once_in_order(city.rows(), {Lane.ALARM: 8})


async def test_commit_notification_wakes_the_uplink(journal: Journal, city: City) -> None:
    """New events are sent at once on the journal's commit, not at the next poll."""
    uplink = Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock(), poll_seconds=600)
    journal.add_commit_listener(uplink.notify)
    city.start()

    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        await asyncio.sleep(0.1)
        await append(journal, Lane.ALARM, 2)
        await wait_until(lambda: backlog(uplink) == 0, timeout=3)
    finally:
        await stop(task)

    assert len(city.rows()) == 2


async def test_cancelled_uplink_leaves_the_journal_working(journal: Journal, city: City) -> None:
    """Cancelling a drain while its ack waits for the journal writer neither loses the
    writer nor the ack: the journal keeps taking events afterwards."""
    await append(journal, Lane.ALARM, 2)
    city.start()
    busy = journal.call(lambda conn: time.sleep(0.3))

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock()) as uplink:
        drain = asyncio.create_task(uplink.drain_once())
        await asyncio.sleep(0.15)
        drain.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drain
        await asyncio.wrap_future(busy)
        await asyncio.wait_for(append(journal, Lane.ALARM, 1, start=3), timeout=5)
        resumed = await uplink.drain_once()

    assert resumed == 1
    assert_each_once_in_order(city.rows(), {Lane.ALARM: 3})


@pytest.mark.parametrize(
    ("key", "status"), [(OTHER_KEY, 403), (HubKey("x.k", HUB, b"0" * 32), 401)]
)
async def test_refused_key_is_a_rejection(
    journal: Journal, city: City, key: HubKey, status: int
) -> None:
    """A key the city refuses is reported as a rejection with its status, not an outage."""
    await append(journal, Lane.ALARM, 1)
    city.start()

    async with Uplink(journal, city.url, key.key_id, key.secret, SystemClock()) as uplink:
        with pytest.raises(CityRejected) as caught:
            await uplink.drain_once()
        lane = uplink.status()["alarm"]

    assert caught.value.status == status
    assert lane["last_error"].startswith(f"HTTP {status}")
    assert city.rows() == []


def _failures(uplink: Uplink) -> int:
    return int(uplink.link_status()["consecutive_failures"])


async def wait_for_failures(uplink: Uplink, count: int) -> None:
    await wait_until(lambda: _failures(uplink) >= count)


def _levels(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    return [
        record.levelname
        for record in caplog.records
        if record.name == "sync.uplink" and record.getMessage().startswith(prefix)
    ]


POISON_SEQS = {Lane.ALARM: 1, Lane.RATING: 3, Lane.TICKET: 6, Lane.HEALTH: 2, Lane.TELEMETRY: 4}


async def test_poison_event_in_each_lane_is_set_aside_and_the_rest_drains(
    journal: Journal, city: City
) -> None:
    """The city refuses one event in every lane (422). The uplink narrows each refused
    batch to the one event, quarantines alarms, ratings and tickets (calling the alert
    hook), dead-letters health and telemetry, and the city holds a tombstone at each
    poison seq, so every lane is contiguous and every other event arrives once."""
    for lane in POISON_SEQS:
        await append(journal, lane, 6)
    city.set_faults(reject_event_ids=[f"{lane.value}-{seq}" for lane, seq in POISON_SEQS.items()])
    city.start()
    hooked: list[SetAside] = []

    async def hook(record: SetAside) -> None:
        hooked.append(record)

    async with Uplink(
        journal, city.url, KEY.key_id, KEY.secret, SystemClock(), 8, on_set_aside=hook
    ) as uplink:
        await drain_all(uplink)
        left = backlog(uplink)

    rows = city.rows()
    assert left == 0
    assert len(rows) == 5 * 5
    for lane, poison in POISON_SEQS.items():
        assert [seq for name, seq, _ in rows if name == lane.value] == [
            seq for seq in range(1, 7) if seq != poison
        ]
    with sqlite3.connect(city.db_path) as conn:
        tombstones = conn.execute(
            "SELECT lane, seq, disposition FROM tombstones ORDER BY lane"
        ).fetchall()
    conn.close()
    assert sorted(tombstones) == sorted(
        (lane.value, seq, DISPOSITION_BY_LANE[lane].value) for lane, seq in POISON_SEQS.items()
    )
    assert {m["lane"]: m["hwm"] for m in city.store.hub_status(HUB)["marks"]} == {
        lane.value: 6 for lane in POISON_SEQS
    }
    assert sorted((r.event.lane.value, r.disposition.value) for r in hooked) == sorted(
        (lane.value, DISPOSITION_BY_LANE[lane].value) for lane in POISON_SEQS
    )
    with journal.reading() as conn:
        summary = set_aside_summary(conn)
    assert (summary["quarantined_open"], summary["dead_lettered"]) == (3, 2)


async def test_tombstone_survives_an_outage_before_it_is_sent(journal: Journal, city: City) -> None:
    """An event set aside while the city then goes down is sent as a tombstone once the
    city is back, never as the refused event, and the lane completes."""
    await append(journal, Lane.TICKET, 3)
    city.set_faults(reject_event_ids=["ticket-2"])
    city.start()

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock(), 1) as uplink:
        first = await uplink.drain_once()
        isolated = await uplink.drain_once()
        city.stop()
        with pytest.raises(CityUnavailable):
            await uplink.drain_once()
        city.start()
        city.set_faults(reject_event_ids=[])
        await drain_all(uplink)

    assert (first, isolated) == (1, 1)
    assert [seq for _, seq, _ in city.rows()] == [1, 3]
    assert city.store.hub_status(HUB)["tombstones_stored"] == {"ticket": 1}


async def test_city_refusing_everything_does_not_empty_the_hub(
    journal: Journal, city: City
) -> None:
    """If the city refuses every event, the uplink sets at most MAX_SET_ASIDE_IN_A_ROW
    aside, then stops narrowing and reports the rejection, keeping the rest pending."""
    await append(journal, Lane.RATING, MAX_SET_ASIDE_IN_A_ROW + 5)
    city.set_faults(reject_event_ids=[f"rating-{n}" for n in range(1, MAX_SET_ASIDE_IN_A_ROW + 6)])
    city.start()

    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock(), 4) as uplink:
        with pytest.raises(CityRejected) as caught:
            await drain_all(uplink)
        with journal.reading() as conn:
            summary = set_aside_summary(conn)

    assert caught.value.status == 422
    assert summary["quarantined_open"] == MAX_SET_ASIDE_IN_A_ROW
    assert city.rows() == []


async def test_city_outage_of_hours_while_ingest_continues(journal: Journal, city: City) -> None:
    """The city is down for three hours of hub time (the injectable clock, advanced in
    half-hour steps) while alarms, ratings and telemetry keep being journaled. The
    uplink keeps retrying; once the city is back, every event arrives exactly once and
    each lane is in order, although the hub's clock is now three hours ahead."""
    clock = ManualClock(wall=time.time())
    uplink = Uplink(journal, city.url, KEY.key_id, KEY.secret, clock, 40)
    journal.add_commit_listener(uplink.notify)
    counts = dict.fromkeys((Lane.ALARM, Lane.RATING, Lane.TELEMETRY), 0)

    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        for step in range(6):
            for lane, per_step in ((Lane.ALARM, 2), (Lane.RATING, 3), (Lane.TELEMETRY, 20)):
                await append(journal, lane, per_step, start=counts[lane] + 1)
                counts[lane] += per_step
            await wait_for_failures(uplink, step + 1)
            await clock.advance(1800)
        await wait_for_failures(uplink, 7)
        city.start()
        await clock.advance(BACKOFF_CAP_SECONDS)
        await wait_until(lambda: backlog(uplink) == 0, timeout=10)
    finally:
        await stop(task)

    assert clock.wall() - time.time() > 3 * 3600 - 60
    assert_each_once_in_order(city.rows(), counts)
    assert city.repeats() == 0
