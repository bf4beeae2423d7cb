"""Ratings through a whole hub: pads over a real Mosquitto, the console API with its
token, citizen identifiers kept out of the file, and the real city receiver over HTTP
catching a chain the hall rewrote and recomputed."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.broker import ManagedBroker
from hub.cli import main
from hub.clock import ManualClock
from hub.config import HubConfig
from hub.ratings import SHA256, genesis, next_link
from hub.ratings.store import chained_ratings
from hub.service import HubService
from sync.city_store import SQLiteBatchStore
from sync.keys import add_key
from sync.receiver import BackgroundReceiver, create_app
from tests.hubkit import DeviceClient, eventually, hub_config
from tests.ratings.kit import hall_time

DEVICES = [{"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1-windows", "window": "W1"}]
PHONE = "+86 138 0013 8000"


@pytest.fixture
def device(broker: ManagedBroker) -> Iterator[DeviceClient]:
    client = DeviceClient(broker.port, "test-rating-pad")
    yield client
    client.close()


@pytest.fixture
async def hub(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    root = unique_topic_root.replace("/", "-")
    clock = ManualClock(wall=hall_time(2026, 3, 2, 10))  # a Monday
    service = HubService(hub_config(tmp_path / "hub", broker.port, root, DEVICES), clock=clock)
    await service.start()
    assert service.ingest.wait_subscribed(10)
    yield service
    await service.stop()


def _journal_files(state_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in state_dir.glob("journal.sqlite3*"))


async def test_pad_rating_to_console_api_and_task_steps(
    hub: HubService, device: DeviceClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A pad's bad rating shows in today's figures with its task and due dates; cases,
    other channels and the unrated count work through the API; a duplicate and a
    malformed rating are refused with their reasons and kept; contact and fix close the
    task; a citizen's phone number is in neither the journal files nor the log."""
    caplog.set_level(logging.DEBUG)
    root = hub.config.mqtt.topic_root
    auth = {"Authorization": f"Bearer {hub.token}"}
    async with httpx.AsyncClient(base_url=hub.console_url, headers=auth) as api:
        async with httpx.AsyncClient(base_url=hub.console_url) as anonymous:
            refused = await anonymous.get("/api/ratings/today")
        device.publish(
            f"{root}/pad-1/rating", {"level": "不满意", "window": "W1", "ticket": "A001"}
        )

        async def today() -> dict[str, Any]:
            reply: dict[str, Any] = (await api.get("/api/ratings/today")).json()
            return reply

        await eventually(lambda: hub.ratings.journal.last_seqs()["rating"] >= 2)
        first_look = await today()

        case = await api.post(
            "/api/ratings/cases", json={"window": "W2", "staff_id": "S9", "case_no": "BJ-9"}
        )
        unrated_before = (await today())["unrated"]
        listed = (await api.get("/api/ratings/unrated?all=1")).json()
        body = {
            "channel": "sms",
            "level": "满意",
            "window": "W2",
            "case_no": "BJ-9",
            "phone": PHONE,
            "tags": ["态度好"],
        }
        rated = await api.post("/api/ratings", json=body)
        duplicate = await api.post("/api/ratings", json={**body, "level": "非常满意"})
        malformed = await api.post("/api/ratings", json={**body, "case_no": "BJ-10", "tags": "x"})
        rejects = (await api.get("/api/ratings/rejects")).json()["rejects"]
        last_look = await today()

        task_id = first_look["bad"][0]["task_id"]
        early_fix = await api.post(f"/api/ratings/tasks/{task_id}/fix", json={"by": "王主任"})
        contact = await api.post(
            f"/api/ratings/tasks/{task_id}/contact", json={"by": "李四", "note": "called back"}
        )
        fix = await api.post(
            f"/api/ratings/tasks/{task_id}/fix", json={"by": "王主任", "note": "signage fixed"}
        )
        tasks = (await api.get("/api/ratings/tasks")).json()["tasks"]
        missing = await api.post("/api/ratings/tasks/999/contact", json={"by": "x"})
        exposed = (await api.get("/metrics")).text

    assert refused.status_code == 401
    assert first_look["date"] == "2026-03-02"
    assert first_look["levels"] == {
        "非常满意": 0,
        "满意": 0,
        "基本满意": 0,
        "不满意": 1,
        "非常不满意": 0,
    }
    assert first_look["bad"] == [
        {
            "rating_id": 1,
            "window": "W1",
            "level": "不满意",
            "task_id": task_id,
            "contact_due": "2026-03-03",
            "fix_due": "2026-03-23",
        }
    ]
    assert case.status_code == 201 and unrated_before == 1
    assert [c["case_no"] for c in listed["cases"]] == ["BJ-9"]
    assert rated.status_code == 201
    rating = rated.json()["rating"]
    assert (rating["staff_id"], rating["channel"], rating["tags"]) == ("S9", "sms", ["态度好"])
    assert len(rating["citizen_key"]) == 64 and "phone" not in rating
    assert duplicate.status_code == 422 and duplicate.json()["error"] == "case_already_rated"
    assert malformed.status_code == 422 and malformed.json()["error"] == "bad_tags"
    assert [reject["reason"] for reject in rejects] == ["bad_tags", "case_already_rated"]
    assert last_look["unrated"] == 0 and last_look["rejected"] == 2
    assert last_look["levels"]["满意"] == 1
    assert (early_fix.status_code, contact.status_code, fix.status_code) == (409, 200, 200)
    assert missing.status_code == 404
    assert [(t["task_id"], t["state"], t["overdue"]) for t in tasks] == [(task_id, "fixed", False)]
    assert 'hallhub_ratings_total{channel="sms",outcome="case_already_rated"}' in exposed
    assert 'hallhub_ratings_total{channel="hall_pad",outcome="recorded"}' in exposed
    for spelling in (PHONE, "13800138000"):
        assert spelling.encode() not in _journal_files(hub.config.hub.state_dir)
        assert spelling not in caplog.text
        assert spelling not in json.dumps(rejects, ensure_ascii=False)


def test_citizen_lookup_key_file_is_owner_only(tmp_path: Path) -> None:
    """The per-hub secret behind citizen lookup keys is written mode 0600, and the same
    phone number, however spelt, gets the same key while another hub's differs."""
    from hub.ratings import CitizenKeys

    keys = CitizenKeys.for_state_dir(tmp_path / "a", SHA256)
    again = CitizenKeys.for_state_dir(tmp_path / "a", SHA256)
    other = CitizenKeys.for_state_dir(tmp_path / "b", SHA256)

    assert (tmp_path / "a" / "citizen-lookup-key").stat().st_mode & 0o777 == 0o600
    assert keys.lookup_key("phone", PHONE) == again.lookup_key("phone", "13800138000")
    assert keys.lookup_key("phone", PHONE) != other.lookup_key("phone", PHONE)
    assert keys.lookup_key("phone", PHONE) != keys.lookup_key("id_number", "13800138000")


# -- the city catches a recomputed chain ----------------------------------------------


class City:
    """The reference receiver with its SQLite store, on a loopback port."""

    def __init__(self, tmp_path: Path) -> None:
        self.key = add_key(tmp_path / "keys.json", "hall-test")
        self.secret_file = tmp_path / "city-secret"
        self.secret_file.write_text(self.key.secret.hex(), encoding="ascii")
        self.store = SQLiteBatchStore(tmp_path / "city.db")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.receiver = BackgroundReceiver(
            create_app(self.store, {self.key.key_id: self.key}), sock
        )
        self.receiver.start()

    def chain(self) -> dict[str, Any]:
        status: dict[str, Any] = self.store.hub_status("hall-test")["rating_chain"]
        return status

    def close(self) -> None:
        self.receiver.stop()
        self.store.close()


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    started = City(tmp_path)
    yield started
    started.close()


def _rewrite_and_recompute(journal_path: Path) -> None:
    """What a hall admin with the SQLite file would do: change rating 2, recompute
    every link, and put the new links into the journaled copies too."""
    with sqlite3.connect(journal_path) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("UPDATE ratings SET level = '满意' WHERE rating_id = 2")
        previous = genesis(SHA256, "hall-test")
        for rating in chained_ratings(conn):
            link = next_link(SHA256, previous, rating.fields)
            conn.execute(
                "UPDATE ratings SET link = ? WHERE rating_id = ?", (link, rating.rating_id)
            )
            for row in conn.execute(
                "SELECT event_id, data FROM events WHERE type = 'rating_recorded'"
            ).fetchall():
                data = json.loads(row["data"])
                if data["chain"]["index"] == rating.rating_id:
                    data["rating"] = rating.fields
                    data["chain"].update(previous=previous, link=link)
                    conn.execute(
                        "UPDATE events SET data = ? WHERE event_id = ?",
                        (json.dumps(data, ensure_ascii=False), row["event_id"]),
                    )
            previous = link
    conn.close()


async def test_receiver_catches_a_rewritten_and_recomputed_chain_at_the_next_sync(
    broker: ManagedBroker,
    tmp_path: Path,
    unique_topic_root: str,
    device: DeviceClient,
    city: City,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ratings synced to the city; the admin rewrites rating 2 in the hub's SQLite and
    recomputes the whole chain, so the hub's own verify passes; the next rating synced
    shows the city a previous link it never saw, and the city records the break."""
    root = unique_topic_root.replace("/", "-")
    city_section = {
        "url": city.url,
        "key_id": city.key.key_id,
        "secret_file": str(city.secret_file),
    }
    config: HubConfig = hub_config(tmp_path / "hub", broker.port, root, DEVICES, city=city_section)
    config_file = tmp_path / "hallhub.yaml"
    config_file.write_text(
        json.dumps({"hub": {"id": "hall-test", "state_dir": str(tmp_path / "hub")}})
    )

    hub = HubService(config)
    await hub.start()
    try:
        assert hub.ingest.wait_subscribed(10)
        device.publish(f"{root}/pad-1/rating", {"level": "满意", "window": "W1", "ticket": "A1"})
        device.publish(
            f"{root}/pad-1/rating", {"level": "非常不满意", "window": "W1", "ticket": "A2"}
        )
        await eventually(lambda: city.chain()["head_index"] == 2)
    finally:
        await hub.stop()
    clean = city.chain()

    _rewrite_and_recompute(tmp_path / "hub" / "journal.sqlite3")
    capsys.readouterr()
    local_verdict = main(["ratings", "verify", "--config", str(config_file)])
    capsys.readouterr()

    hub = HubService(config)
    await hub.start()
    try:
        assert hub.ingest.wait_subscribed(10)
        device.publish(f"{root}/pad-1/rating", {"level": "满意", "window": "W1", "ticket": "A3"})
        await eventually(lambda: city.chain()["head_index"] == 3)
    finally:
        await hub.stop()
    caught = city.chain()

    assert clean["breaks"] == 0
    assert local_verdict == 0  # the rewrite fooled the hub's own check
    assert caught["breaks"] == 1
    assert caught["recent_breaks"][0]["chain_index"] == 3
    assert caught["recent_breaks"][0]["problem"] == "previous_mismatch"
