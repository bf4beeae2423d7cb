"""A city database restored from a backup: what it lost must come again.

Real parts only: the reference receiver over HTTP on loopback with a SQLite file that
is restored from a copy (a city's ordinary disaster recovery), a real journal and
uplink.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

from hub.clock import SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.city_store import SQLiteBatchStore
from sync.keys import HubKey
from sync.receiver import BackgroundReceiver, create_app
from sync.uplink import Uplink

HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("55" * 32))


def alarm(n: int) -> Observation:
    return Observation(f"alarm-{n}", Lane.ALARM, "ta-1", "toilet_alarm", "call", {}, n, True)


async def drain_to(db: Path, journal: Journal) -> None:
    store = SQLiteBatchStore(db)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(create_app(store, {KEY.key_id: KEY}), sock)
    receiver.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock()) as uplink:
            while await uplink.drain_once():
                pass
    finally:
        receiver.stop()
        store.close()


def backup(db: Path, to: Path) -> None:
    with sqlite3.connect(db) as source, sqlite3.connect(to) as target:
        source.backup(target)
    source.close()
    target.close()


async def test_a_city_restored_from_backup_gets_back_what_it_lost(tmp_path: Path) -> None:
    """The city backs up its database after alarms 1-5, stores alarms 6-10, then
    loses its disk and restores last night's copy. Every hub still holds 6-10 in its
    journal (alarms are kept for years), but the receiver takes the hub's `base` (10)
    as if it held it: hwm = max(stored 5, base 10), so alarms 6-10 were never asked
    for again and are missing at the city for good, without a gap ever being seen."""
    city_db, night_copy = tmp_path / "city.db", tmp_path / "city-backup.db"
    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    try:
        for n in range(1, 6):
            await journal.append(alarm(n))
        await drain_to(city_db, journal)
        backup(city_db, night_copy)
        for n in range(6, 11):
            await journal.append(alarm(n))
        await drain_to(city_db, journal)

        city_db.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{city_db}{suffix}").unlink(missing_ok=True)
        shutil.copy(night_copy, city_db)  # the city's disaster recovery

        for n in range(11, 13):
            await journal.append(alarm(n))
        await drain_to(city_db, journal)
    finally:
        journal.close()

    with sqlite3.connect(city_db) as conn:
        held = [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]
    conn.close()
    assert held == list(range(1, 13)), f"alarms missing at the city: {held}"
