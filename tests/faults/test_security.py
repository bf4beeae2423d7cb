"""Security checks over every route: nothing answers without credentials.

The routes are taken from the apps themselves, so a route added later is checked
without anyone remembering to add it here. The hub's console runs for real (a hub
on a free loopback port); the city receiver is served by uvicorn on loopback.

Covered elsewhere, not repeated here: a replayed signed sync request
(tests/test_receiver.py::test_replayed_request_is_rejected), a device publishing
as another and a handset acknowledging for another team under the generated
Mosquitto ACL (tests/test_mqtt_auth.py).
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from hub.broker import ManagedBroker
from hub.console import create_app
from hub.console_access import OPEN_ROUTES
from hub.service import HubService
from sync.receiver import create_app as create_receiver_app
from tests.hubkit import hub_config
from tests.test_receiver import (
    ADMIN_TOKEN,
    KEY,
    Running,
    receiver,  # noqa: F401  (the receiver on loopback)
)


def concrete_requests(app: Starlette) -> list[tuple[str, str]]:
    """(method, path) for every route of `app`, path parameters filled in."""
    requests = []
    for route in app.routes:
        assert isinstance(route, Route), f"unexpected route type {route!r}"
        path = re.sub(r"\{\w+:int\}", "1", route.path)
        path = re.sub(r"\{\w+\}", "hall-test", path)
        requests += [(method, path) for method in sorted(set(route.methods or {"GET"}) - {"HEAD"})]
    return requests


@pytest.fixture
async def hub(
    tmp_path: Path, broker: ManagedBroker, unique_topic_root: str
) -> AsyncIterator[HubService]:
    pad = {"id": "pad-1", "model": "rating-pad-rp5", "window": "W1"}
    service = HubService(hub_config(tmp_path / "hub", broker.port, unique_topic_root, [pad]))
    await service.start()
    yield service
    await service.stop()


async def test_every_console_route_refuses_requests_without_the_token(hub: HubService) -> None:
    """Each console route but the open ones (/healthz, the sign-in form) answers 401 with
    no credentials and with a wrong token; a page sends the browser to sign in instead."""
    requests = concrete_requests(create_app(hub))
    assert len(requests) >= 10
    base = f"http://127.0.0.1:{hub.console_port}"

    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as client:
        for method, path in requests:
            anonymous = await client.request(method, path)
            wrong = await client.request(
                method, path, headers={"Authorization": "Bearer " + "x" * 43}
            )
            if path in OPEN_ROUTES:
                assert method == "POST" or anonymous.status_code == 200, path
                continue
            if method == "GET" and path.startswith("/ui/"):
                assert anonymous.status_code == wrong.status_code == 303, path
                assert anonymous.headers["location"] == "/login"
                continue
            assert anonymous.status_code == 401, f"{method} {path} answered without a token"
            assert wrong.status_code == 401, f"{method} {path} took a wrong token"


async def test_console_listens_on_loopback_only_by_default(hub: HubService) -> None:
    """Without a console.host setting the console's listening socket is 127.0.0.1 only."""
    assert hub.console_port is not None
    assert listening_addresses(hub.console_port) == {"127.0.0.1"}


async def test_every_receiver_route_refuses_unsigned_requests(
    receiver: Running,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Each city receiver route but /healthz refuses a request with no signature or token."""
    url = receiver.url
    app = create_receiver_app(receiver.state.store, {KEY.key_id: KEY}, admin_token=ADMIN_TOKEN)
    requests = concrete_requests(app)
    assert any(path.startswith("/admin/") for _method, path in requests)

    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as client:
        for method, path in requests:
            answer = await client.request(method, path, content=b"{}")
            if path == "/healthz":
                assert answer.status_code == 200
                continue
            assert answer.status_code in (401, 403), f"{method} {path}: {answer.status_code}"


def listening_addresses(port: int) -> set[str]:
    """The local IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found
