"""The reference city receiver over real HTTP: it stores each event id once, in lane
order, refuses unsigned, forged, stale and replayed requests, and runs as a process."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.events import Event, Lane
from sync.city_store import SQLiteBatchStore
from sync.keys import HubKey, write_keys
from sync.receiver import BackgroundReceiver, Faults, ReceiverState, create_app
from sync.signing import sign_request

HUB = "hall-1"
ADMIN_TOKEN = "admin-token-for-tests"
KEY = HubKey(key_id="hall-1.k1", hub_id=HUB, secret=bytes.fromhex("11" * 32))
OTHER_KEY = HubKey(key_id="hall-2.k1", hub_id="hall-2", secret=bytes.fromhex("22" * 32))


@dataclass
class Running:
    url: str
    db_path: Path
    state: ReceiverState


def bind_loopback(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Running]:
    store = SQLiteBatchStore(tmp_path / "city.db")
    app = create_app(store, {KEY.key_id: KEY, OTHER_KEY.key_id: OTHER_KEY}, admin_token=ADMIN_TOKEN)
    sock = bind_loopback()
    background = BackgroundReceiver(app, sock)
    background.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield Running(url, store.path, app.state.receiver)
    finally:
        background.stop()
        store.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        yield http


def wire(seq: int, lane: Lane = Lane.ALARM, event_id: str | None = None) -> dict[str, Any]:
    return Event(
        hub_id=HUB,
        epoch=1,
        lane=lane,
        seq=seq,
        event_id=event_id or f"{lane.value}-{seq}",
        device_id="toilet-2f-1",
        kind="alarm_button",
        type="pressed",
        data={"n": seq},
        received_at=1_767_225_600.0 + seq,
        clock_synchronised=True,
    ).to_wire()


def batch_body(lanes: dict[Lane, tuple[int, list[dict[str, Any]]]], epoch: int = 1) -> bytes:
    document = {
        "hub_id": HUB,
        "epoch": epoch,
        "lanes": {
            lane.value: {"base": base, "events": events} for lane, (base, events) in lanes.items()
        },
    }
    return gzip.compress(json.dumps(document).encode())


def signed_headers(
    body: bytes, path: str, key: HubKey = KEY, method: str = "POST", now: float | None = None
) -> dict[str, str]:
    now = time.time() if now is None else now
    return {
        "Authorization": sign_request(key.key_id, key.secret, method, path, body, now),
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }


async def post_batch(
    client: httpx.AsyncClient, running: Running, body: bytes, key: HubKey = KEY, hub_id: str = HUB
) -> httpx.Response:
    path = f"/v1/hubs/{hub_id}/batches"
    return await client.post(
        running.url + path, content=body, headers=signed_headers(body, path, key)
    )


def stored(running: Running) -> list[tuple[str, int, str]]:
    with sqlite3.connect(running.db_path) as conn:
        rows = conn.execute("SELECT lane, seq, event_id FROM events ORDER BY id").fetchall()
    conn.close()
    return [(lane, seq, event_id) for lane, seq, event_id in rows]


async def test_healthz_needs_no_auth(receiver: Running, client: httpx.AsyncClient) -> None:
    """The health route answers without a signature."""
    response = await client.get(receiver.url + "/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_batch_is_stored_in_lane_order_and_acked(
    receiver: Running, client: httpx.AsyncClient
) -> None:
    """Events are stored lane by lane in seq order, and each lane is acked at its hwm."""
    body = batch_body(
        {
            Lane.TELEMETRY: (0, [wire(2, Lane.TELEMETRY), wire(1, Lane.TELEMETRY)]),
            Lane.ALARM: (0, [wire(1), wire(2), wire(3)]),
        }
    )

    response = await post_batch(client, receiver, body)

    assert response.status_code == 200
    assert response.json()["acks"] == {"alarm": 3, "telemetry": 2}
    assert abs(response.json()["server_time"] - time.time()) < 5
    assert [(lane, seq) for lane, seq, _ in stored(receiver)] == [
        ("alarm", 1),
        ("alarm", 2),
        ("alarm", 3),
        ("telemetry", 1),
        ("telemetry", 2),
    ]


async def test_resent_batch_is_stored_once(receiver: Running, client: httpx.AsyncClient) -> None:
    """A batch sent again (a lost ack) is acked the same and stores nothing new."""
    body = batch_body({Lane.RATING: (0, [wire(1, Lane.RATING), wire(2, Lane.RATING)])})

    first = await post_batch(client, receiver, body)
    second = await post_batch(client, receiver, body)

    assert first.json()["acks"] == second.json()["acks"] == {"rating": 2}
    assert len(stored(receiver)) == 2
    marks = receiver.state.store.hub_status(HUB)["marks"]
    assert [(m["lane"], m["hwm"], m["repeats"]) for m in marks] == [("rating", 2, 2)]


async def test_known_event_id_at_a_new_place_is_kept_once(
    receiver: Running, client: httpx.AsyncClient
) -> None:
    """An event id already stored (here resent under a new epoch) is not stored again,
    but still advances the lane so later events are not blocked."""
    await post_batch(client, receiver, batch_body({Lane.TICKET: (0, [wire(1, Lane.TICKET)])}))
    again = batch_body({Lane.TICKET: (0, [wire(1, Lane.TICKET), wire(2, Lane.TICKET)])}, epoch=2)

    response = await post_batch(client, receiver, again)

    assert response.json()["acks"] == {"ticket": 2}
    assert [event_id for _, _, event_id in stored(receiver)] == ["ticket-1", "ticket-2"]
    marks = receiver.state.store.hub_status(HUB)["marks"]
    assert [(m["epoch"], m["hwm"], m["duplicates"]) for m in marks] == [(1, 1, 0), (2, 2, 1)]


async def test_gap_stops_only_its_lane(receiver: Running, client: httpx.AsyncClient) -> None:
    """A missing seq stops its lane at the gap; other lanes go on."""
    body = batch_body(
        {
            Lane.ALARM: (0, [wire(1), wire(2), wire(4)]),
            Lane.HEALTH: (0, [wire(1, Lane.HEALTH)]),
        }
    )

    response = await post_batch(client, receiver, body)

    assert response.json()["acks"] == {"alarm": 2, "health": 1}
    assert len(stored(receiver)) == 3


async def test_base_is_where_the_lane_starts(receiver: Running, client: httpx.AsyncClient) -> None:
    """A hub's base (what it holds as acked) counts as stored, so seq base+1 is next."""
    body = batch_body({Lane.ALARM: (10, [wire(11), wire(12)])})

    response = await post_batch(client, receiver, body)

    assert response.json()["acks"] == {"alarm": 12}
    assert len(stored(receiver)) == 2


async def test_replayed_request_is_rejected(receiver: Running, client: httpx.AsyncClient) -> None:
    """The same signed request sent twice is refused the second time with 401 replay."""
    body = batch_body({Lane.ALARM: (0, [wire(1)])})
    path = f"/v1/hubs/{HUB}/batches"
    headers = signed_headers(body, path)

    first = await client.post(receiver.url + path, content=body, headers=headers)
    replay = await client.post(receiver.url + path, content=body, headers=headers)

    assert first.status_code == 200
    assert replay.status_code == 401
    assert replay.json()["error"] == "replay"


async def test_wrong_keys_are_rejected(receiver: Running, client: httpx.AsyncClient) -> None:
    """Unsigned, unknown-key, forged and other-hub requests are refused; nothing is stored."""
    body = batch_body({Lane.ALARM: (0, [wire(1)])})
    path = f"/v1/hubs/{HUB}/batches"
    forged = HubKey(KEY.key_id, HUB, bytes.fromhex("33" * 32))
    unknown = HubKey("hall-1.k9", HUB, KEY.secret)

    unsigned = await client.post(receiver.url + path, content=body)
    replies = [await post_batch(client, receiver, body, key=key) for key in (unknown, forged)]
    other_hub = await post_batch(client, receiver, body, key=OTHER_KEY)

    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "malformed")
    assert [(r.status_code, r.json()["error"]) for r in replies] == [
        (401, "unknown_key"),
        (401, "bad_signature"),
    ]
    assert (other_hub.status_code, other_hub.json()["error"]) == (403, "wrong_hub")
    assert stored(receiver) == []


async def test_stale_timestamp_reply_tells_the_time(
    receiver: Running, client: httpx.AsyncClient
) -> None:
    """A request signed an hour off is refused with the receiver's time, so a hub can adjust."""
    body = batch_body({Lane.ALARM: (0, [wire(1)])})
    path = f"/v1/hubs/{HUB}/batches"

    response = await client.post(
        receiver.url + path,
        content=body,
        headers=signed_headers(body, path, now=time.time() - 3600),
    )

    assert response.status_code == 401
    assert response.json()["error"] == "clock_skew"
    assert abs(response.json()["server_time"] - time.time()) < 5
    assert "date" in response.headers


@pytest.mark.parametrize(
    "document",
    [
        {"hub_id": "hall-2", "epoch": 1, "lanes": {}},
        {
            "hub_id": HUB,
            "epoch": 1,
            "lanes": {"alarm": {"base": 0, "events": [wire(1, Lane.HEALTH)]}},
        },
        {"hub_id": HUB, "epoch": 1, "lanes": {"sirens": {"base": 0, "events": []}}},
        {"hub_id": HUB, "epoch": "1", "lanes": {}},
    ],
)
async def test_malformed_batch_is_refused(
    receiver: Running, client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    """A batch naming another hub, a misfiled event, an unknown lane or a wrong type is 400."""
    body = gzip.compress(json.dumps(document).encode())

    response = await post_batch(client, receiver, body)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_batch"


async def test_corrupt_gzip_is_refused(receiver: Running, client: httpx.AsyncClient) -> None:
    """A body that is not gzip is refused after the signature check, with 400."""
    response = await post_batch(client, receiver, b"not gzip at all")

    assert (response.status_code, response.json()["error"]) == (400, "bad_encoding")


async def test_status_route_is_signed(receiver: Running, client: httpx.AsyncClient) -> None:
    """The status route reports marks and counts to the hub's own key only."""
    await post_batch(client, receiver, batch_body({Lane.ALARM: (0, [wire(1), wire(2)])}))
    path = f"/v1/hubs/{HUB}/status"

    unsigned = await client.get(receiver.url + path)
    response = await client.get(
        receiver.url + path, headers=signed_headers(b"", path, method="GET")
    )

    assert unsigned.status_code == 401
    assert response.status_code == 200
    assert response.json()["events_stored"] == {"alarm": 2}
    assert response.json()["marks"][0]["hwm"] == 2


async def test_faults_set_through_the_admin_route(
    receiver: Running, client: httpx.AsyncClient
) -> None:
    """fail_with_500 refuses before storing; drop_ack stores, then replies 500."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    wrong = await client.post(receiver.url + "/admin/faults", json={"fail_with_500": 1.0})
    await client.post(receiver.url + "/admin/faults", json={"fail_with_500": 1.0}, headers=admin)

    failed = await post_batch(client, receiver, batch_body({Lane.ALARM: (0, [wire(1)])}))
    rows_after_failure = len(stored(receiver))
    reply = await client.post(
        receiver.url + "/admin/faults", json={"fail_with_500": 0, "drop_ack": 1}, headers=admin
    )
    dropped = await post_batch(client, receiver, batch_body({Lane.ALARM: (0, [wire(1)])}))

    assert wrong.status_code == 401
    assert failed.status_code == 500
    assert rows_after_failure == 0
    assert reply.json() == {
        "fail_with_500": 0.0,
        "delay_seconds": 0.0,
        "drop_ack": 1.0,
        "reject_event_ids": [],
    }
    assert dropped.status_code == 500
    assert len(stored(receiver)) == 1
    assert receiver.state.faults == Faults(drop_ack=1.0)


def test_receiver_runs_as_a_process(tmp_path: Path) -> None:
    """`python -m sync.receiver` serves batches and exits cleanly on SIGTERM."""
    keys_path = tmp_path / "keys.json"
    write_keys(keys_path, {KEY.key_id: KEY})
    with bind_loopback() as probe:
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "sync.receiver",
        "--db",
        str(tmp_path / "city.db"),
        "--port",
        str(port),
        "--keys",
        str(keys_path),
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(url, process)
        body = batch_body({Lane.ALARM: (0, [wire(1)])})
        path = f"/v1/hubs/{HUB}/batches"
        with httpx.Client(trust_env=False, timeout=5) as http:
            response = http.post(url + path, content=body, headers=signed_headers(body, path))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)

    assert response.json()["acks"] == {"alarm": 1}
    assert process.returncode == 0, stderr.decode()
    assert stat_mode(keys_path) == 0o600


def _wait_for_health(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    with httpx.Client(trust_env=False, timeout=1) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "receiver process exited"
            try:
                if http.get(url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
    raise AssertionError("receiver process did not become healthy")


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
