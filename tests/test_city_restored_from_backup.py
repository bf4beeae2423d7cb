"""A city database restored from a backup: what it lost must come again.

Real parts only: the reference receiver over HTTP on loopback with its database
(a SQLite file, or a PostgreSQL database in the tests' own cluster) restored from a
copy (a city's ordinary disaster recovery), a real journal and uplink.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import psycopg
import pytest

from hub.clock import SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from hub.ops.retention import YEAR, prune
from hub.ops.settings import RetentionSection
from sync.city_store import BatchStore, SQLiteBatchStore
from sync.keys import HubKey
from sync.outbox import RETENTION_REASON
from sync.pg_store import PostgresBatchStore
from sync.receiver import BackgroundReceiver, create_app
from sync.uplink import Uplink
from tests.postgres import ManagedPostgres

HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("55" * 32))


def alarm(n: int) -> Observation:
    return Observation(f"alarm-{n}", Lane.ALARM, "ta-1", "toilet_alarm", "call", {}, n, True)


class City(Protocol):
    """A city database the test can open, back up, lose and restore."""

    def open(self) -> BatchStore: ...
    def backup(self) -> None: ...
    def restore(self) -> None: ...
    def query(self, sql: str) -> list[tuple[object, ...]]: ...


class SQLiteCity:
    def __init__(self, folder: Path) -> None:
        self.db, self.night_copy = folder / "city.db", folder / "city-backup.db"

    def open(self) -> BatchStore:
        return SQLiteBatchStore(self.db)

    def backup(self) -> None:
        with sqlite3.connect(self.db) as source, sqlite3.connect(self.night_copy) as target:
            source.backup(target)
        source.close()
        target.close()

    def restore(self) -> None:
        self.db.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        shutil.copy(self.night_copy, self.db)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            found = [tuple(row) for row in conn.execute(sql)]
        conn.close()
        return found


class PostgresCity:
    """Backup and restore as whole databases (CREATE DATABASE … TEMPLATE)."""

    def __init__(self, cluster: ManagedPostgres) -> None:
        self.name = f"city{secrets.token_hex(4)}"
        self._cluster = cluster
        self._admin(f"CREATE DATABASE {self.name}")

    def open(self) -> BatchStore:
        return PostgresBatchStore(self._cluster.dsn(self.name))

    def backup(self) -> None:
        self._admin(f"CREATE DATABASE {self.name}_copy TEMPLATE {self.name}")

    def restore(self) -> None:
        self._admin(f"DROP DATABASE {self.name}")
        self._admin(f"CREATE DATABASE {self.name} TEMPLATE {self.name}_copy")

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self._cluster.dsn(self.name)) as conn:
            return [tuple(row) for row in conn.execute(sql)]  # type: ignore[arg-type]

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self._cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def city(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[City]:
    if request.param == "sqlite":
        yield SQLiteCity(tmp_path)
    else:
        yield PostgresCity(request.getfixturevalue("postgres"))


async def drain_to(city: City, journal: Journal, batch_size: int = 500) -> None:
    store = city.open()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(create_app(store, {KEY.key_id: KEY}), sock)
    receiver.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with Uplink(
            journal, url, KEY.key_id, KEY.secret, SystemClock(), batch_size
        ) as uplink:
            while await uplink.drain_once():
                pass
    finally:
        receiver.stop()
        store.close()


async def lose_alarms_6_to_10(city: City, journal: Journal) -> None:
    """Alarms 1-5 stored and backed up, 6-10 stored after the copy, then the restore."""
    for n in range(1, 6):
        await journal.append(alarm(n))
    await drain_to(city, journal)
    city.backup()
    for n in range(6, 11):
        await journal.append(alarm(n))
    await drain_to(city, journal)
    city.restore()  # the city's disaster recovery


async def test_a_city_restored_from_backup_gets_back_what_it_lost(
    city: City, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    """The city backs up its database after alarms 1-5, stores alarms 6-10, then
    loses its disk and restores last night's copy. Every hub still holds 6-10 in its
    journal (alarms are kept for years). The receiver used to take the hub's `base`
    (10) as if it held it: hwm = max(stored 5, base 10), so alarms 6-10 were never
    asked for again. Now it answers its own hwm (5), the hub moves the lane back with
    one WARNING, and sends 6-12."""
    await lose_alarms_6_to_10(city, journal)
    for n in range(11, 13):
        await journal.append(alarm(n))
    with caplog.at_level(logging.WARNING, logger="sync.uplink"):
        await drain_to(city, journal)

    held = [row[0] for row in city.query("SELECT seq FROM events ORDER BY seq")]
    assert held == list(range(1, 13)), f"alarms missing at the city: {held}"
    assert city.query("SELECT lane, hwm FROM lane_marks") == [("alarm", 12)]
    rewinds = [r.getMessage() for r in caplog.records if "moved back" in r.getMessage()]
    assert rewinds == [
        "lane alarm: acked_seq moved back from 10 to 5, the city holds less than it"
        " confirmed (restored from a backup?); sending again from there"
    ]


async def test_what_retention_deleted_before_the_restore_comes_as_a_tombstone(
    city: City, journal: Journal
) -> None:
    """Retention deleted alarms 1-8 on the hub (acknowledged, past their period) before
    the city restored a copy holding 1-5. The hub cannot send 6-8 again: it sends a
    compacted tombstone for them and alarms 9-12 themselves, so the lane is contiguous
    at the city, and later alarms keep draining (no gap for ever)."""
    await lose_alarms_6_to_10(city, journal)
    settings = RetentionSection(alarm_years=0.5)
    removed = await journal.write(lambda conn: prune(conn, settings, 0.5 * YEAR + 8.5))
    assert removed["alarm"] == 8
    for n in range(11, 13):
        await journal.append(alarm(n))
    await drain_to(city, journal)

    held = [row[0] for row in city.query("SELECT seq FROM events ORDER BY seq")]
    assert held == [1, 2, 3, 4, 5, 9, 10, 11, 12]
    tombstones = city.query("SELECT seq, through_seq, disposition, reason FROM tombstones")
    assert tombstones == [(6, 8, "compacted", RETENTION_REASON)]

    await journal.append(alarm(13))
    await drain_to(city, journal)
    assert city.query("SELECT lane, hwm FROM lane_marks") == [("alarm", 13)]
    assert city.query("SELECT MAX(seq) FROM events") == [(13,)]


async def test_a_restore_is_mended_batch_by_batch_with_the_read_ahead_thrown_away(
    city: City, journal: Journal
) -> None:
    """With batches of two, the hub has already read ahead the batch after 11-12
    (13-14, as if 12 were acknowledged) when the restored city answers 5. That
    read-ahead is thrown away and the lane is sent again from 6, two at a time."""
    await lose_alarms_6_to_10(city, journal)
    for n in range(11, 17):
        await journal.append(alarm(n))
    await drain_to(city, journal, batch_size=2)

    held = [row[0] for row in city.query("SELECT seq FROM events ORDER BY id")]
    assert held == list(range(1, 17))


async def test_a_fresh_city_database_still_starts_at_the_hubs_base(
    city: City, journal: Journal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A city with no mark for the lane (a new database) takes the hub's base as held:
    it is not sent the history it never had, and the hub moves nothing back."""
    (tmp_path / "old").mkdir()
    old = SQLiteCity(tmp_path / "old")
    for n in range(1, 6):
        await journal.append(alarm(n))
    await drain_to(old, journal)

    await journal.append(alarm(6))
    with caplog.at_level(logging.WARNING, logger="sync.uplink"):
        await drain_to(city, journal)

    assert [row[0] for row in city.query("SELECT seq FROM events")] == [6]
    assert city.query("SELECT lane, hwm FROM lane_marks") == [("alarm", 6)]
    assert not [r for r in caplog.records if "moved back" in r.getMessage()]
