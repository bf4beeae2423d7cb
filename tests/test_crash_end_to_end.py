"""The whole chain across crashes: devices → Mosquitto → hub (kill -9) → city receiver.

The hub runs as its own process and is killed with SIGKILL several times while
devices publish at QoS 1 and the receiver drops some acknowledgements after storing.
Afterwards every published event is in the journal once and at the receiver once,
with each lane's sequence contiguous from 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from hub.broker import ManagedBroker
from hub.events import device_event_id
from hub.ratings.views import verify
from sync.keys import add_key
from tests.conftest import free_port
from tests.hubkit import DeviceClient

HUB_ID = "hall-crash"
PADS = [f"pad-{n}" for n in range(1, 5)]
RATINGS_PER_PAD = 250
KILLS = 3


def write_hub_config(
    tmp_path: Path,
    broker: ManagedBroker,
    receiver_port: int,
    devices: list[dict[str, str]] | None = None,
) -> Path:
    key = add_key(tmp_path / "city" / "keys.json", HUB_ID)
    secret_file = tmp_path / "hub" / "city-secret"
    secret_file.parent.mkdir(parents=True)
    secret_file.write_text(key.secret.hex())
    document = {
        "hub": {"id": HUB_ID, "state_dir": str(tmp_path / "hub"), "clock_sync": "assume"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_root": "crashhall"},
        "console": {"host": "127.0.0.1", "port": 0},
        "city": {
            "url": f"http://127.0.0.1:{receiver_port}",
            "key_id": key.key_id,
            "secret_file": str(secret_file),
            "batch_size": 100,
        },
        "devices": devices
        or [{"id": pad, "model": "rating-pad-rp5", "window": pad} for pad in PADS],
    }
    path = tmp_path / "hallhub.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def start_receiver(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    with (tmp_path / "receiver.log").open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sync.receiver",
                "--db",
                str(tmp_path / "city.sqlite3"),
                "--port",
                str(port),
                "--keys",
                str(tmp_path / "city" / "keys.json"),
                "--drop-ack",
                "0.2",
            ],
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("receiver did not start")


def start_hub(tmp_path: Path, config: Path) -> subprocess.Popen[bytes]:
    with (tmp_path / "hub.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run", "--config", str(config)],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def wait_until_hub_subscribed(port: int, journal: Path) -> str:
    """Publish one probe rating until the hub has journaled it (its session exists)."""
    device = DeviceClient(port, "device-probe")
    try:
        msg_id = device.publish("crashhall/pad-1/rating", {"level": "满意", "window": "pad-1"})
        event_id = device_event_id("pad-1", msg_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if journaled(journal, event_id):
                return event_id
            time.sleep(0.1)
            msg_id = device.publish("crashhall/pad-1/rating", {"level": "满意", "window": "pad-1"})
            event_id = device_event_id("pad-1", msg_id)
    finally:
        device.close()
    raise AssertionError("the hub never subscribed")


def journaled(journal: Path, event_id: str) -> bool:
    """Whether the journal holds `event_id`; false while the hub is still creating it."""
    try:
        return bool(read(journal, f"SELECT 1 FROM events WHERE event_id = '{event_id}'"))
    except sqlite3.OperationalError:  # no file or no schema yet
        return False


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running at the end are stopped."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def publish_ratings(port: int, pad: str, published: list[str]) -> None:
    device = DeviceClient(port, f"device-{pad}")
    try:
        for n in range(RATINGS_PER_PAD):
            level = ["非常满意", "满意", "基本满意", "不满意"][n % 4]
            msg_id = device.publish(f"crashhall/{pad}/rating", {"level": level, "window": pad})
            published.append(device_event_id(pad, msg_id))
            time.sleep(0.01)
    finally:
        device.close()


def read(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_kill_9_of_the_hub_loses_nothing_and_duplicates_nothing(
    fresh_broker: ManagedBroker, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """Repeated kill -9 mid-ingest and dropped acks: each event once, lanes contiguous."""
    receiver_port = free_port()
    config = write_hub_config(tmp_path, fresh_broker, receiver_port)
    spawned.append(start_receiver(tmp_path, receiver_port))
    spawned.append(start_hub(tmp_path, config))
    journal = tmp_path / "hub" / "journal.sqlite3"
    # Messages published before the hub's first subscription have no session to
    # queue in; a real hall commissions the hub before its devices.
    probe = wait_until_hub_subscribed(fresh_broker.port, journal)
    published: list[str] = []
    publishers = [
        threading.Thread(target=publish_ratings, args=(fresh_broker.port, pad, published))
        for pad in PADS
    ]
    for thread in publishers:
        thread.start()
    for _ in range(KILLS):
        time.sleep(1.5)
        hub = spawned[-1]
        hub.send_signal(signal.SIGKILL)
        hub.wait()
        spawned.append(start_hub(tmp_path, config))
    for thread in publishers:
        thread.join(timeout=120)

    city = tmp_path / "city.sqlite3"
    wanted = {*published, probe}
    rating_ids = "SELECT event_id FROM events WHERE lane = 'rating'"
    recorded = "SELECT COUNT(*) FROM events WHERE type = 'rating_recorded'"
    pad_ratings = "SELECT COUNT(*) FROM events WHERE type = 'rating'"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        at_city = {row[0] for row in read(city, "SELECT event_id FROM events")}
        # The hub journals a rating_recorded event (the chained rating) after each pad
        # rating, so its rating lane still grows for a moment after the last press.
        all_chained = read(journal, recorded)[0][0] == read(journal, pad_ratings)[0][0]
        if all_chained and wanted | {row[0] for row in read(journal, rating_ids)} <= at_city:
            break
        time.sleep(0.5)

    assert len(published) == len(PADS) * RATINGS_PER_PAD
    journal_ids = {row[0] for row in read(journal, rating_ids)}
    city_ids = [row[0] for row in read(city, rating_ids)]
    assert published, "nothing was published"
    assert set(published) <= journal_ids, "the journal lost ratings the broker acknowledged"
    assert Counter(city_ids).most_common(1)[0][1] == 1, "a rating reached the city twice"
    assert set(city_ids) == journal_ids, "the city and the journal disagree"
    seqs = [
        row[0] for row in read(city, "SELECT seq FROM events WHERE lane = 'rating' ORDER BY seq")
    ]
    assert seqs == list(range(1, len(journal_ids) + 1)), "rating lane has gaps at the city"
    chained = [str(row[0]).rsplit(":", 1)[1] for row in read(journal, "SELECT source FROM ratings")]
    assert len(chained) == len(set(chained)) == read(journal, pad_ratings)[0][0]
    assert set(published) <= set(chained), "a pad rating was not chained"
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
        assert verify(conn, HUB_ID)["ok"], "the rating chain does not verify after kill -9"
    assert read(city, "SELECT COUNT(*) FROM rating_chain_breaks")[0][0] == 0
