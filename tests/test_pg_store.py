"""The receiver on PostgreSQL (a cluster the tests start themselves): every event once
per (hub, event id) even from two receivers, lanes in order with tombstones, the
receiver process with --dsn, and the silence watch."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from hub.clock import ManualClock, SystemClock
from hub.events import Event, Lane, Observation
from hub.journal import Journal
from sync.city_store import LaneUpload, WireEvent
from sync.keys import HubKey, write_keys
from sync.pg_store import PostgresBatchStore
from sync.receiver import BackgroundReceiver, create_app
from sync.signing import sign_request
from sync.uplink import Uplink

HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("11" * 32))
ADMIN = "admin-token-for-pg-tests"


def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def upload(lane: Lane, seqs: range, base: int = 0, epoch: int = 1) -> LaneUpload:
    events = [
        Event(HUB, epoch, lane, seq, f"{lane.value}-{seq}", "pad-1", "rating_pad", "rating", {})
        for seq in seqs
    ]
    wire = [WireEvent.model_validate_json(json.dumps(e.to_wire())) for e in events]
    return LaneUpload(base=base, events=wire)


@pytest.fixture
def store(postgres_dsn: str) -> Iterator[PostgresBatchStore]:
    opened = PostgresBatchStore(postgres_dsn)
    yield opened
    opened.close()


def test_two_receivers_store_each_event_id_once(
    store: PostgresBatchStore, postgres_dsn: str
) -> None:
    """A second receiver on the same database, given the same events again under a new
    epoch, stores none twice: the unique key on (hub_id, event_id) holds, and the lane
    still advances."""
    other = PostgresBatchStore(postgres_dsn)
    try:
        first = store.apply_batch(HUB, 1, {Lane.RATING: upload(Lane.RATING, range(1, 6))}, 1.0)
        again = other.apply_batch(
            HUB, 2, {Lane.RATING: upload(Lane.RATING, range(1, 8), epoch=2)}, 2.0
        )
    finally:
        other.close()

    assert (first[Lane.RATING].inserted, first[Lane.RATING].hwm) == (5, 5)
    assert (again[Lane.RATING].inserted, again[Lane.RATING].duplicates) == (2, 5)
    assert rows(postgres_dsn, "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events") == [(7, 7)]
    constraint = rows(
        postgres_dsn,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'events_once'",
    )
    assert constraint == [("UNIQUE (hub_id, event_id)",)]


def test_gap_and_resend_follow_the_same_rule(store: PostgresBatchStore) -> None:
    """A gap stops its lane; a resent batch is skipped by seq, as in the SQLite store."""
    gap = LaneUpload(base=0, events=[*upload(Lane.ALARM, range(1, 3)).events,
                                     *upload(Lane.ALARM, range(4, 5)).events])  # fmt: skip
    outcome = store.apply_batch(HUB, 1, {Lane.ALARM: gap}, 1.0)[Lane.ALARM]
    resent = store.apply_batch(HUB, 1, {Lane.ALARM: upload(Lane.ALARM, range(1, 3))}, 2.0)

    assert (outcome.hwm, outcome.gap_at) == (2, 4)
    assert resent[Lane.ALARM].repeats == 2
    assert store.hub_status(HUB)["events_stored"] == {"alarm": 2}


async def test_uplink_drains_to_postgres_with_a_poison_event(
    store: PostgresBatchStore, postgres_dsn: str, tmp_path: Path
) -> None:
    """Over HTTP into PostgreSQL, with one rating refused: every other event arrives
    once in lane order and the refused seq is a tombstone."""
    app = create_app(store, {KEY.key_id: KEY})
    app.state.receiver.faults.reject_event_ids = ["rating-3"]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(app, sock)
    receiver.start()
    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    try:
        for lane in (Lane.RATING, Lane.TELEMETRY):
            for n in range(1, 6):
                await journal.append(
                    Observation(
                        f"{lane.value}-{n}", lane, "pad-1", "rating_pad", "r", {}, 1.0, True
                    )
                )
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock(), 4) as uplink:
            while await uplink.drain_once():
                pass
    finally:
        journal.close()
        receiver.stop()

    stored = rows(postgres_dsn, "SELECT lane, seq FROM events ORDER BY lane, seq")
    assert stored == [("rating", n) for n in (1, 2, 4, 5)] + [("telemetry", n) for n in range(1, 6)]
    assert rows(postgres_dsn, "SELECT lane, seq, disposition FROM tombstones") == [
        ("rating", 3, "quarantined")
    ]


def test_receiver_process_runs_on_postgres(postgres_dsn: str, tmp_path: Path) -> None:
    """`python -m sync.receiver --dsn …` serves and answers, then exits on SIGTERM."""
    keys_path = tmp_path / "keys.json"
    write_keys(keys_path, {KEY.key_id: KEY})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "sync.receiver", "--dsn", postgres_dsn,
               "--keys", str(keys_path), "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "receiver did not come up"
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)

    assert health.json() == {"status": "ok"}
    assert process.returncode == 0, stderr
    assert "store PostgreSQL" in stderr
    assert rows(postgres_dsn, "SELECT COUNT(*) FROM lane_marks") == [(0,)]


async def test_silent_hub_is_flagged_and_logged(
    store: PostgresBatchStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A known hub not heard from for the configured minutes is flagged silent on
    /admin/hubs and logged once at WARNING; its next signed request clears it."""
    clock = ManualClock(wall=time.time())
    app = create_app(store, {KEY.key_id: KEY}, clock=clock, admin_token=ADMIN, silent_after=600)
    caplog.set_level(logging.INFO, logger="sync.silence")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(app, sock)
    receiver.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, trust_env=False
        ) as http:
            fresh = (await http.get("/admin/hubs")).json()["hubs"]
            clock.jump_wall(601)
            silent = (await http.get("/admin/hubs")).json()["hubs"]
            await http.get("/admin/hubs")
            path = f"/v1/hubs/{HUB}/status"
            auth = sign_request(KEY.key_id, KEY.secret, "GET", path, b"", clock.wall())
            status = await http.get(path, headers={"Authorization": auth})
            back = (await http.get("/admin/hubs")).json()["hubs"]
    finally:
        receiver.stop()

    assert status.status_code == 200
    assert [h["silent"] for h in (fresh[0], silent[0], back[0])] == [False, True, False]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "hub hall-1 silent for 10 minutes" in warnings[0].getMessage()
    assert any("heard from again" in r.getMessage() for r in caplog.records)


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    """A --dsn nothing answers on ends the receiver with exit 2 and a message saying
    PostgreSQL could not be reached, not a traceback."""
    keys_path = tmp_path / "keys.json"
    write_keys(keys_path, {KEY.key_id: KEY})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"host=127.0.0.1 port={port} user=nobody dbname=none connect_timeout=3"

    done = subprocess.run(
        [sys.executable, "-m", "sync.receiver", "--dsn", dsn, "--keys", str(keys_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 2
    assert "cannot connect to PostgreSQL" in done.stderr
    assert "Traceback" not in done.stderr
