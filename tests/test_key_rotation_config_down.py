"""Configuration still comes down while keys rotate in the documented order (the
city adds the new key first, the hub later).

Real parts only: a running hub (real Mosquitto), the reference receiver over HTTP on
loopback with its keys file re-read live.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.test_city_commands as cc
from hub.broker import ManagedBroker
from hub.service import HubService
from sync.city_store import SQLiteBatchStore
from sync.keys import KeysFile, add_key, load_keys, write_keys
from sync.receiver import BackgroundReceiver, create_app
from tests.hubkit import hub_config


@pytest.fixture
def rotating_city(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A receiver whose keys file holds the hub's old key; yields its URL and keys file."""
    city_keys = tmp_path / "city-keys.json"
    add_key(city_keys, cc.HUB, created_at=1_000.0)
    store = SQLiteBatchStore(tmp_path / "city.db")
    app = create_app(store, KeysFile(city_keys), admin_token=cc.ADMIN)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    background = BackgroundReceiver(app, sock)
    background.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", city_keys
    background.stop()
    store.close()


@pytest.fixture
async def hub_with_old_key(
    rotating_city: tuple[str, Path], broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    url, city_keys = rotating_city
    hub_keys = tmp_path / "hub-keys.json"
    write_keys(hub_keys, load_keys(city_keys))  # enrolled with the one key there is
    config = hub_config(
        tmp_path / "hub",
        broker.port,
        unique_topic_root.replace("/", "-"),
        cc.DEVICES,
        city={"url": url, "keys_file": str(hub_keys)},
    )
    service = HubService(config)
    await service.start()
    yield service
    await service.stop()


async def test_configuration_comes_down_while_the_city_has_the_new_key_first(
    hub_with_old_key: HubService, rotating_city: tuple[str, Path]
) -> None:
    """Rotation step 1: the city adds the hub's new key beside the old one; the hub
    has not been given it yet, and keeps syncing with the old key (as documented).
    A configuration pushed now was signed by the receiver with the *newest* key, one
    the hub does not hold, and refused as "not signed with a key of this hub": no
    configuration could reach a hub until its side of the rotation was done."""
    url, city_keys = rotating_city
    add_key(city_keys, cc.HUB, created_at=2_000.0)  # the city's half of the rotation

    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {cc.ADMIN}"}, trust_env=False
    ) as admin:
        city = cc.City(url, admin, Path("."))
        reply: dict[str, Any] = await city.answer(
            await city.push("configure", {"version": "v1", "files": cc.GOOD_FILES})
        )
        status_ok = await _hub_still_syncs(admin, hub_with_old_key)

    assert status_ok, "the hub should keep syncing on its old key meanwhile"
    assert reply["status"] == "active", reply
    assert hub_with_old_key.city_config.active_version() == "v1"


async def _hub_still_syncs(admin: httpx.AsyncClient, hub: HubService) -> bool:
    """The hub is heard from (its long poll is signed with the old key) after rotation."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hubs = (await admin.get("/admin/hubs")).json()["hubs"]
        if any(h.get("hub_id") == cc.HUB and not h.get("silent") for h in hubs):
            return True
        await asyncio.sleep(0.1)
    return False
