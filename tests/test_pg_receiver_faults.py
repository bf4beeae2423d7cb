"""The PostgreSQL receiver takes what the SQLite receiver takes, and keeps serving
when its database restarts.

Real parts only: the test run's own PostgreSQL cluster (never the machine's 5432),
the receiver over HTTP on loopback, a real journal and uplink.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from devices.payloads import decode_payload
from devices.profiles import load_model_file
from firmware_configs import __file__ as firmware_init
from hub.clock import SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.city_store import SQLiteBatchStore
from sync.errors import CityError
from sync.keys import HubKey
from sync.pg_store import PostgresBatchStore
from sync.receiver import BackgroundReceiver, create_app
from sync.signing import sign_request
from sync.uplink import Uplink
from tests.conftest import free_port
from tests.postgres import ManagedPostgres

HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("22" * 32))
# Firmware written in C often sends its fixed-size char buffers padded with NULs.
STATUS_FROM_C_FIRMWARE = b'{"online": true, "firmware": "rp5-2.1.0\\u0000\\u0000"}'


def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def serve(store: object) -> tuple[BackgroundReceiver, str]:
    app = create_app(store, {KEY.key_id: KEY})  # type: ignore[arg-type]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(app, sock)
    receiver.start()
    return receiver, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def drain(uplink: Uplink, attempts: int) -> list[str]:
    """Drain as the uplink's own loop would, without its backoff sleeps."""
    errors: list[str] = []
    for _ in range(attempts):
        try:
            if not await uplink.drain_once():
                break
        except CityError as exc:
            errors.append(str(exc))
    return errors


async def journal_alarm_and_padded_status(journal: Journal) -> None:
    model = load_model_file(Path(firmware_init).parent / "rating-pad-rp5.yaml")
    status = decode_payload(model, "status", STATUS_FROM_C_FIRMWARE)  # the hub takes it
    await journal.append(
        Observation(
            "status-1", Lane.HEALTH, "pad-1", "rating_pad", "status", status.fields, 1.0, True
        )
    )
    await journal.append(
        Observation(
            "alarm-1", Lane.ALARM, "ta-1", "toilet_alarm", "call", {"zone": "f1"}, 2.0, True
        )
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_nul_in_a_device_string_does_not_block_the_backlog(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A pad whose firmware string ends in NUL padding (valid JSON, valid UTF-8, taken
    by the hub) is stored by the SQLite receiver. The PostgreSQL receiver failed with
    500 on it (JSONB refuses \\u0000), a 5xx the hub retries for ever: the health event,
    and every alarm behind it in the same batch, never reached the city. The city must
    either store the event or refuse it with a 4xx so the hub sets it aside."""
    if backend == "postgres":
        store: object = PostgresBatchStore(request.getfixturevalue("postgres_dsn"))
    else:
        store = SQLiteBatchStore(tmp_path / "city.db")
    receiver, url = serve(store)
    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    try:
        await journal_alarm_and_padded_status(journal)
        async with Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock()) as uplink:
            errors = await drain(uplink, attempts=8)
            acked = {lane: state["acked_seq"] for lane, state in uplink.status().items()}
    finally:
        journal.close()
        receiver.stop()
        store.close()  # type: ignore[attr-defined]

    assert acked["alarm"] == 1, f"the alarm never reached the city: {errors[:2]}"
    assert acked["health"] == 1, f"the health lane is stuck: {errors[:2]}"


@pytest.fixture
def own_postgres() -> Iterator[ManagedPostgres]:
    """A cluster of this test's own, so it can be restarted without disturbing others."""
    managed = ManagedPostgres(free_port())
    managed.start()
    yield managed
    managed.stop()


def restart(managed: ManagedPostgres) -> None:
    log = str(managed._root / "server.log")  # not our pipes: pg_ctl would wait on them
    managed._run("pg_ctl", "-D", str(managed._data), "-m", "fast", "-w", "-l", log, "restart")


def signed_status(url: str) -> httpx.Response:
    path = f"/v1/hubs/{HUB}/status"
    header = sign_request(KEY.key_id, KEY.secret, "GET", path, b"", time.time())
    return httpx.get(url + path, headers={"Authorization": header}, trust_env=False)


async def test_the_postgres_receiver_recovers_when_its_database_restarts(
    own_postgres: ManagedPostgres, tmp_path: Path
) -> None:
    """PostgreSQL restarted (an upgrade, a failover, a crash): the receiver must take
    batches again once the database is back. It kept its one connection, closed by the
    restart, and answered 500 to every batch until the receiver itself was restarted:
    every hub of the city stopped syncing."""
    dsn = own_postgres.create_database("city")
    store = PostgresBatchStore(dsn)
    receiver, url = serve(store)
    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    try:
        await journal.append(
            Observation("alarm-1", Lane.ALARM, "ta-1", "toilet_alarm", "call", {}, 1.0, True)
        )
        async with Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock()) as uplink:
            assert await uplink.drain_once() == 1
            restart(own_postgres)
            await journal.append(
                Observation("alarm-2", Lane.ALARM, "ta-1", "toilet_alarm", "call", {}, 2.0, True)
            )
            errors = await drain(uplink, attempts=5)
            acked = uplink.status()["alarm"]["acked_seq"]
        status = signed_status(url)
    finally:
        journal.close()
        receiver.stop()
        store.close()

    assert acked == 2, f"nothing stored after the database restart: {errors[:2]}"
    assert status.status_code == 200
    assert rows(dsn, "SELECT event_id FROM events ORDER BY seq") == [("alarm-1",), ("alarm-2",)]
    assert json.loads(status.text)["events_stored"] == {"alarm": 2}
