"""The city's command queue lives in the receiver's store, SQLite file or PostgreSQL:
a command queued before a receiver restart reaches the hub after it, an answer and
the hub's active configuration version outlive it, answers are kept up to a bound
while pending commands always stay, and a long poll still wakes at once. Real
receivers over HTTP on loopback, a hub's real command channel, real databases."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from hub.clock import ManualClock, SystemClock
from hub.journal import Journal
from sync import city_store, pg_store
from sync.city_config import CityConfigStore
from sync.city_store import BatchStore, SQLiteBatchStore
from sync.command_queue import MAX_PENDING_PER_HUB, STORE_RECHECK_SECONDS, CommandQueue
from sync.commands import CommandChannel
from sync.errors import CommandQueueFull
from sync.keys import HubKey
from sync.pg_store import PostgresBatchStore
from sync.receiver import BackgroundReceiver, create_app
from sync.signing import sign_request
from sync.uplink import Uplink
from tests.conftest import free_port

HUB = "hall-7"
KEY = HubKey("hall-7.k1", HUB, bytes.fromhex("77" * 32))
ADMIN = "admin-token-for-queue-tests"
BUNDLE_FILES = {"windows.yaml": "categories: {A: {name: 综合}}\nwindows: {W1: {categories: [A]}}\n"}

OpenStore = Callable[[], BatchStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens the receiver's store on one database, again each time it is called."""
    if request.param == "sqlite":
        path = tmp_path / "city.db"
        return lambda: SQLiteBatchStore(path)
    dsn = request.getfixturevalue("postgres_dsn")
    return lambda: PostgresBatchStore(dsn)


def bind_loopback(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.fixture
def port() -> int:
    """The loopback port the receiver serves on, in each of its lives."""
    return free_port()


@dataclass
class City:
    """A city operator's view of one running receiver: the admin routes, the status."""

    url: str
    admin: httpx.AsyncClient

    async def push(self, type_: str, payload: dict[str, Any]) -> str:
        response = await self.admin.post(
            f"/admin/hubs/{HUB}/commands", json={"type": type_, "payload": payload}
        )
        assert response.status_code == 202, response.text
        return str(response.json()["command_id"])

    async def command(self, command_id: str) -> dict[str, Any]:
        response = await self.admin.get(f"/admin/commands/{command_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def hub_status(self) -> dict[str, Any]:
        path = f"/v1/hubs/{HUB}/status"
        auth = sign_request(KEY.key_id, KEY.secret, "GET", path, b"", time.time())
        response = await self.admin.get(path, headers={"Authorization": auth})
        assert response.status_code == 200, response.text
        return dict(response.json())


@contextlib.asynccontextmanager
async def receiver(open_store: OpenStore, port: int) -> AsyncIterator[City]:
    """A receiver process's life: open the store, serve on `port`, stop, close."""
    store = open_store()
    sock = bind_loopback(port)
    background = BackgroundReceiver(create_app(store, {KEY.key_id: KEY}, admin_token=ADMIN), sock)
    background.start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, trust_env=False
        ) as admin:
            yield City(url, admin)
    finally:
        background.stop()
        store.close()


@dataclass
class Hub:
    """A hub's command channel, with state queries recorded and bundles really applied."""

    channel: CommandChannel
    config: CityConfigStore
    asked: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def hub(tmp_path: Path, port: int) -> AsyncIterator[Hub]:
    url = f"http://127.0.0.1:{port}"
    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    uplink = Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock())
    config = CityConfigStore(tmp_path / "hub-state")
    asked: list[dict[str, Any]] = []

    async def query_state(payload: dict[str, Any]) -> dict[str, Any]:
        asked.append(payload)
        return {"status": "ok", "hub_id": HUB, "asked": payload.get("n")}

    async def configure(bundle: dict[str, Any]) -> dict[str, Any]:
        return config.apply(bundle, {KEY.key_id: KEY}, lambda folder: None).to_json()

    handlers = {"query_state": query_state, "configure": configure}
    channel = CommandChannel(uplink, url, HUB, handlers, SystemClock())
    try:
        yield Hub(channel, config, asked)
    finally:
        await channel.aclose()
        await uplink.aclose()
        journal.close()


async def test_command_queued_before_a_restart_is_carried_out_after_it(
    open_store: OpenStore, port: int, hub: Hub
) -> None:
    """A command the city queued while the hub was away is still pending after the
    receiver restarts: the hub's next poll gets it, carries it out once, and the
    answer is recorded against the same command id."""
    async with receiver(open_store, port) as city:
        command_id = await city.push("query_state", {"n": 1})

    async with receiver(open_store, port) as city:
        before = await city.command(command_id)
        brought = await hub.channel.poll_once(wait=5)
        after = await city.command(command_id)

    assert before["state"] == "pending"
    assert brought == 1
    assert hub.asked == [{"n": 1}]
    assert after["state"] == "answered"
    assert after["reply"] == {"status": "ok", "hub_id": HUB, "asked": 1}


async def test_answer_recorded_before_a_restart_is_read_after_it(
    open_store: OpenStore, port: int, hub: Hub
) -> None:
    """The city can look up a hub's answer after the receiver restarted, and the
    answered command is not handed to the hub again."""
    async with receiver(open_store, port) as city:
        command_id = await city.push("query_state", {"n": 2})
        assert await hub.channel.poll_once(wait=5) == 1

    async with receiver(open_store, port) as city:
        command = await city.command(command_id)
        brought = await hub.channel.poll_once(wait=0)

    assert command == {
        "command_id": command_id,
        "type": "query_state",
        "payload": {"n": 2},
        "hub_id": HUB,
        "state": "answered",
        "reply": {"status": "ok", "hub_id": HUB, "asked": 2},
    }
    assert brought == 0
    assert hub.asked == [{"n": 2}]


async def test_active_configuration_version_survives_a_restart(
    open_store: OpenStore, port: int, hub: Hub
) -> None:
    """The configuration version a hub reported active is still in its status
    document after the receiver restarts, before the hub says anything new."""
    async with receiver(open_store, port) as city:
        assert (await city.hub_status())["active_config"] is None
        await city.push("configure", {"version": "2026.4", "files": BUNDLE_FILES})
        assert await hub.channel.poll_once(wait=5) == 1

    async with receiver(open_store, port) as city:
        status = await city.hub_status()

    assert hub.config.active_version() == "2026.4"
    assert status["active_config"] == "2026.4"


async def test_long_poll_wakes_as_soon_as_a_command_is_queued(
    open_store: OpenStore, port: int, hub: Hub
) -> None:
    """A hub already waiting in a long poll gets a new command at once, well before
    the poll would read the store again on its own."""
    async with receiver(open_store, port) as city:
        poll = asyncio.create_task(hub.channel.poll_once(wait=30))
        await asyncio.sleep(0.5)  # the poll is waiting at the receiver
        queued_at = time.monotonic()
        await city.push("query_state", {"n": 3})
        brought = await asyncio.wait_for(poll, 30)
        took = time.monotonic() - queued_at

    assert brought == 1 and hub.asked == [{"n": 3}]
    assert took < STORE_RECHECK_SECONDS - 1, f"poll answered after {took:.1f} s"


async def test_any_json_reply_is_kept_and_odd_ids_are_refused(
    open_store: OpenStore, port: int
) -> None:
    """A reply holding a NUL and Chinese text is stored and read back as sent; one
    holding a lone surrogate (JSON, but not Unicode text) is refused with 400 and the
    command stays pending; an id no command or hub can have is a 404 or a 400."""
    odd = b'{"status": "ok", "note": "\\ud800"}'
    body = b'{"status": "ok", "note": "\\u0000 \xe5\xa5\xbd"}'
    async with receiver(open_store, port) as city:
        command_id = await city.push("query_state", {})
        path = f"/v1/hubs/{HUB}/commands/{command_id}/reply"
        refused = await city.admin.post(path, content=odd, headers=_signed(path, odd))
        still = await city.command(command_id)
        posted = await city.admin.post(path, content=body, headers=_signed(path, body))
        command = await city.command(command_id)
        unknown = await city.admin.get("/admin/commands/c-%00")
        no_hub = await city.admin.post(
            "/admin/hubs/hall%007/commands", json={"type": "query_state", "payload": {}}
        )

    assert (refused.status_code, still["state"]) == (400, "pending")
    assert posted.status_code == 200, posted.text
    assert command["reply"] == {"status": "ok", "note": "\x00 好"}
    assert (unknown.status_code, no_hub.status_code) == (404, 400)


async def test_answers_are_kept_up_to_the_bound_and_pending_commands_always(
    open_store: OpenStore,
) -> None:
    """Of a hub's answered commands only the newest `keep_answered` stay readable,
    also after a restart; a command still pending is never deleted, however old."""
    clock = ManualClock()
    store = open_store()
    try:
        queue = CommandQueue(store.commands, clock, keep_answered=3)
        waiting = await queue.enqueue(HUB, "query_state", {"n": 0})
        answered = []
        for n in range(1, 6):
            command = await queue.enqueue(HUB, "query_state", {"n": n})
            await queue.answer(HUB, command.command_id, {"status": "ok", "asked": n})
            answered.append(command.command_id)
    finally:
        store.close()

    store = open_store()
    try:
        queue = CommandQueue(store.commands, clock, keep_answered=3)
        kept = [await queue.get(command_id) for command_id in answered]
        pending = await queue.wait_for(HUB, 0, _never)
    finally:
        store.close()

    assert kept[:2] == [None, None]
    assert [c.reply for c in kept[2:] if c is not None] == [
        {"status": "ok", "asked": n} for n in (3, 4, 5)
    ]
    assert [c.command_id for c in pending] == [waiting.command_id]


async def test_pending_cap_holds_across_a_restart(open_store: OpenStore) -> None:
    """A hub holds at most MAX_PENDING_PER_HUB pending commands, counted in the store:
    a restart does not reset the count, and an answer makes room for one more."""
    store = open_store()
    try:
        queue = CommandQueue(store.commands, ManualClock())
        first = await queue.enqueue(HUB, "query_state", {"n": 0})
        for n in range(1, MAX_PENDING_PER_HUB):
            await queue.enqueue(HUB, "query_state", {"n": n})
    finally:
        store.close()

    store = open_store()
    try:
        queue = CommandQueue(store.commands, ManualClock())
        with pytest.raises(CommandQueueFull) as refused:
            await queue.enqueue(HUB, "query_state", {"n": "one too many"})
        await queue.answer(HUB, first.command_id, {"status": "ok"})
        room = await queue.enqueue(HUB, "query_state", {"n": "room again"})
        pending = await queue.wait_for(HUB, 0, _never)
    finally:
        store.close()

    assert (refused.value.hub_id, refused.value.limit) == (HUB, MAX_PENDING_PER_HUB)
    assert len(pending) == MAX_PENDING_PER_HUB
    assert [c.payload["n"] for c in pending[:2]] == [1, 2]
    assert pending[-1].command_id == room.command_id


async def test_receiver_database_from_before_the_queue_gets_its_tables(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A receiver database made before commands were stored (events tables only)
    is opened as it is: the command tables are added, opening it again changes
    nothing, and what was stored before is kept. SQLite and PostgreSQL alike."""
    path = tmp_path / "old-city.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(city_store.SCHEMA)
        old.execute("INSERT INTO lane_marks VALUES ('hall-7', 1, 'alarm', 4, 0, 0, 1.0)")
        old.commit()
    dsn = request.getfixturevalue("postgres_dsn")
    with psycopg.connect(dsn) as old_pg:
        for statement in pg_store.SCHEMA:
            old_pg.execute(statement)
        old_pg.execute("INSERT INTO lane_marks VALUES ('hall-7', 1, 'alarm', 4, 0, 0, 1.0)")

    for open_again in (lambda: SQLiteBatchStore(path), lambda: PostgresBatchStore(dsn)):
        for _ in range(2):
            store = open_again()
            try:
                queue = CommandQueue(store.commands, ManualClock())
                await queue.enqueue(HUB, "query_state", {})
                marks = store.hub_status(HUB)["marks"]
                pending = await queue.wait_for(HUB, 0, _never)
            finally:
                store.close()
            assert [(m["lane"], m["hwm"]) for m in marks] == [("alarm", 4)]
        assert len(pending) == 2


async def test_command_queued_through_another_receiver_reaches_the_hub(
    postgres_dsn: str, port: int, hub: Hub
) -> None:
    """Two receivers on one PostgreSQL database: a command queued through one reaches
    a hub waiting in a long poll on the other, when that one reads the store again."""

    def open_store() -> BatchStore:
        return PostgresBatchStore(postgres_dsn)

    async with (
        receiver(open_store, port),
        receiver(open_store, free_port()) as other,
    ):
        poll = asyncio.create_task(hub.channel.poll_once(wait=30))
        await asyncio.sleep(0.5)
        await other.push("query_state", {"n": 4})
        brought = await asyncio.wait_for(poll, 30)

    assert brought == 1 and hub.asked == [{"n": 4}]


def _signed(path: str, body: bytes) -> dict[str, str]:
    return {"Authorization": sign_request(KEY.key_id, KEY.secret, "POST", path, body, time.time())}


async def _never() -> bool:
    return False
