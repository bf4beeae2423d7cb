"""Clock faults end to end: a box that boots with a wrong date, then NTP steps it
forward by years and later back by an hour, while a hall publishes and the city
receives.

Order must come from each lane's seq, never from wall time; events stamped while
the clock was not synchronised must say so; the signed sync must keep working
across the steps (the receiver's clock tells the hub how far off it is). Timers
across wall-clock jumps are covered by
tests/test_rules_in_hub.py::test_wall_clock_jumps_in_the_hub_neither_fire_nor_strand_a_timer.
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
from tests.faults.kit import HallPublisher, hall_devices
from tests.hubkit import hub_config
from tests.rulekit import advance, wall_at

LANES = ("rating", "alarm", "ticket")
WRONG_BOOT_DATE = wall_at("2000-01-01 08:00")


def city_rows(city: Path, lane: str) -> list[tuple[str, float, int]]:
    """(event id, hub receive time, clock synchronised) of a lane at the city, by seq."""
    conn = sqlite3.connect(f"file:{city}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT event_id, received_at, clock_synchronised FROM events WHERE lane = ?"
            " ORDER BY seq",
            (lane,),
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def publish_phase(publisher: HallPublisher, clock: ManualClock, rounds: int) -> None:
    for _ in range(rounds):
        publisher.publish_round()
        await advance(clock, 1, step=1)
    publisher.wait_acknowledged()


async def test_wrong_boot_date_and_ntp_steps_keep_order_flags_and_sync_right(
    tmp_path: Path, fresh_broker: ManagedBroker
) -> None:
    """Booted in 2000, stepped to 2026, then back an hour: every event reaches the city
    once, each lane in publish order by seq although receive times go backwards, and
    only the events stamped before the first step are marked unsynchronised."""
    key = add_key(tmp_path / "city-keys.json", "hall-test")
    (tmp_path / "city-secret").write_text(key.secret.hex())
    store = SQLiteBatchStore(tmp_path / "city.db")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(create_app(store, {key.key_id: key}), sock)
    receiver.start()
    city = {"url": f"http://127.0.0.1:{sock.getsockname()[1]}", "key_id": key.key_id,
            "secret_file": str(tmp_path / "city-secret")}  # fmt: skip
    devices = hall_devices(3, ("rating-pad-rp5", "toilet-alarm-ta1", "ticket-printer-tp80"))
    config = hub_config(tmp_path / "hub", fresh_broker.port, "hall", devices, city=city)
    clock = ManualClock(wall=WRONG_BOOT_DATE, synchronised=False)
    hub = HubService(config, clock=clock)
    await hub.start()
    assert hub.ingest.wait_subscribed(10)
    publisher = HallPublisher(fresh_broker.port, "hall", devices)
    try:
        await publish_phase(publisher, clock, 20)  # the wrong date, not synchronised
        unsynchronised = len(publisher.sent_in_order())
        clock.jump_wall(time.time() - clock.wall())  # NTP steps it to now
        clock.synchronised = True
        await publish_phase(publisher, clock, 20)
        clock.jump_wall(-3600)  # and back an hour
        await publish_phase(publisher, clock, 20)
        sent = publisher.sent_in_order()
        await wait_for_city(tmp_path / "city.db", set(sent), clock)
    finally:
        publisher.close()
        await hub.stop()
        receiver.stop()
        store.close()

    flagged_unsynchronised = set(sent[:unsynchronised])
    published = set(sent)
    for lane in LANES:
        everything = city_rows(tmp_path / "city.db", lane)
        assert len(everything) == len({row[0] for row in everything}), f"{lane}: an event twice"
        # Only the devices' own events: the hub adds its records (a rating's chained
        # record, a ticket's number) to these lanes, from its own clock.
        rows = [row for row in everything if row[0] in published]
        in_lane = [event_id for event_id in sent if event_id in {row[0] for row in rows}]
        assert [row[0] for row in rows] == in_lane, f"{lane}: not in publish order by seq"
        for event_id, _received_at, synchronised in rows:
            assert bool(synchronised) is (event_id not in flagged_unsynchronised), lane
        times = [received_at for _id, received_at, _sync in rows]
        assert times != sorted(times), f"{lane}: wall time never went back; proves nothing"


async def wait_for_city(city: Path, wanted: set[str], clock: ManualClock) -> None:
    deadline = time.monotonic() + 60
    while True:
        held = {row[0] for lane in LANES for row in city_rows(city, lane)}
        if wanted <= held:
            return
        assert time.monotonic() < deadline, f"{len(wanted - held)} events never reached the city"
        await clock.advance(5)
        await asyncio.sleep(0.1)
