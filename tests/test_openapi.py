"""schemathesis against docs/openapi.yaml and a real receiver over HTTP, with valid
credentials: every documented operation answers as documented, none fails with a
server error, and every operation gets at least one 2xx (so a run where everything
is refused cannot pass)."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sync.city_store import SQLiteBatchStore
from sync.keys import HubKey
from sync.receiver import BackgroundReceiver, Faults, ReceiverState, create_app
from sync.signing import sign_request

ROOT = Path(__file__).resolve().parent.parent
HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("11" * 32))
ADMIN = "admin-token-for-schemathesis"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Credentials are valid for one hub, so its paths are the ones exercised; a queued
# command gives the reply and admin routes an id that exists; the long poll is not
# left to wait.
PINNED_QUERY = {"/v1/hubs/{hub_id}/commands": {"wait": 0}}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, ReceiverState]]:
    store = SQLiteBatchStore(tmp_path / "city.db")
    app = create_app(store, {KEY.key_id: KEY}, admin_token=ADMIN)
    state: ReceiverState = app.state.receiver
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    background = BackgroundReceiver(app, sock)
    background.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    background.stop()
    store.close()


def send(http: httpx.Client, case: schemathesis.Case, base_url: str) -> httpx.Response:
    """Send a generated case as a hub or an operator would: gzip and sign, or bearer."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url=base_url)
    headers = {k: v for k, v in kwargs["headers"].items() if k.lower() != "authorization"}
    body = json.dumps(kwargs["json"]).encode() if "json" in kwargs else b""
    request = http.build_request(kwargs["method"], kwargs["url"], params=kwargs.get("params"))
    path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")

    if path.endswith("/batches"):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if path.startswith("/admin/"):
        headers["Authorization"] = f"Bearer {ADMIN}"
    elif path.startswith("/v1/"):
        headers["Authorization"] = sign_request(
            KEY.key_id, KEY.secret, kwargs["method"], path, body, time.time()
        )
    return http.request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params"), content=body, headers=headers
    )


def exercise(
    operation: schemathesis.APIOperation,
    http: httpx.Client,
    base_url: str,
    state: ReceiverState,
    statuses: Counter[tuple[str, int]],
    path_values: dict[str, str],
) -> None:
    """Run one operation's example and generated cases, checking each response."""
    label = f"{operation.method.upper()} {operation.path}"
    pinned = {k: v for k, v in path_values.items() if "{" + k + "}" in operation.path}
    generated = operation.as_strategy(
        path_parameters=pinned or None, query=PINNED_QUERY.get(operation.path)
    )
    strategies = [*operation.get_strategies_from_examples(), generated]

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: schemathesis.Case) -> None:
        case.path_parameters = {**(case.path_parameters or {}), **pinned}
        response = send(http, case, base_url)
        statuses[(label, response.status_code)] += 1
        state.faults = Faults()  # a generated fault must not leak into the next case
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_documented_operation_gets_a_2xx(receiver: tuple[str, ReceiverState]) -> None:
    """Each operation of docs/openapi.yaml is run with its example and generated cases;
    responses conform to the document, none is a 5xx, each operation has a 2xx."""
    base_url, state = receiver
    schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")
    statuses: Counter[tuple[str, int]] = Counter()

    with httpx.Client(trust_env=False, timeout=10) as http:
        queued = http.post(
            f"{base_url}/admin/hubs/{HUB}/commands",
            json={"type": "query_state", "payload": {}},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        path_values = {"hub_id": HUB, "command_id": queued.json()["command_id"]}
        for result in schema.get_all_operations():
            exercise(result.ok(), http, base_url, state, statuses, path_values)

    operations = {label for label, _ in statuses}
    succeeded = {label for label, status in statuses if 200 <= status < 300}
    assert len(operations) == 11
    assert operations == succeeded, f"no 2xx for {operations - succeeded}: {statuses}"
    assert sum(n for (_, status), n in statuses.items() if status == 401) == 0
