"""Probes and operations figures of a running hub: /healthz, /readyz, disk use.

Each test runs a real hub with its console on a free loopback port, against the
session's Mosquitto (or, for the broker check, a port nothing listens on).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from hub.broker import ManagedBroker
from hub.service import HubService
from tests.conftest import free_port
from tests.hubkit import eventually, hub_config


@asynccontextmanager
async def running_hub(config: Any) -> AsyncIterator[HubService]:
    service = HubService(config)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def get(service: HubService, path: str, token: bool = True) -> httpx.Response:
    headers = {"Authorization": f"Bearer {service.token}"} if token else {}
    async with httpx.AsyncClient(base_url=service.console_url, headers=headers) as http:
        return await http.get(path)


async def test_ready_hub_names_every_check(
    tmp_path: Path, broker: ManagedBroker, unique_topic_root: str
) -> None:
    """Connected, writable, rules loaded, clock trusted: 200 with each check named."""
    config = hub_config(tmp_path, broker.port, unique_topic_root, [])
    async with running_hub(config) as service:
        assert service.ingest.wait_connected(10)
        answer = await get(service, "/readyz")

    assert answer.status_code == 200
    body = answer.json()
    assert body["ready"] is True
    assert set(body["checks"]) == {"broker", "journal", "rules", "clock"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_hub_without_its_broker_is_alive_but_not_ready(tmp_path: Path) -> None:
    """No broker: /healthz still answers 200 without a token, /readyz 503 naming the broker."""
    config = hub_config(tmp_path, free_port(), "hall", [])
    async with running_hub(config) as service:
        alive = await get(service, "/healthz", token=False)
        ready = await get(service, "/readyz")

    assert alive.status_code == 200
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["broker"]["ok"] is False
    assert "not connected" in checks["broker"]["detail"]
    assert checks["journal"]["ok"] is True


async def test_hub_with_an_untrusted_clock_is_not_ready(
    tmp_path: Path, broker: ManagedBroker, unique_topic_root: str
) -> None:
    """A clock that is not synchronised makes the hub not ready, and says so."""
    config = hub_config(tmp_path, broker.port, unique_topic_root, [])
    config.hub.clock_sync = "never"
    async with running_hub(config) as service:
        assert service.ingest.wait_connected(10)
        ready = await get(service, "/readyz")

    assert ready.status_code == 503
    assert ready.json()["checks"]["clock"] == {
        "ok": False,
        "detail": "not synchronised (waiting for NTP)",
    }


async def test_readiness_and_operations_need_the_token(tmp_path: Path) -> None:
    """Only /healthz is open; /readyz and /api/operations refuse a request without token."""
    config = hub_config(tmp_path, free_port(), "hall", [])
    async with running_hub(config) as service:
        refused = [await get(service, path, token=False) for path in ("/readyz", "/api/operations")]

    assert [answer.status_code for answer in refused] == [401, 401]


async def test_disk_figures_show_in_the_api_and_in_metrics(
    tmp_path: Path, broker: ManagedBroker, unique_topic_root: str
) -> None:
    """The console API and /metrics give the journal's disk use, free space and the
    bytes written per day."""
    config = hub_config(tmp_path, broker.port, unique_topic_root, [])
    async with running_hub(config) as service:
        await eventually(lambda: service.retention.last_run)
        figures = (await get(service, "/api/operations")).json()["disk"]
        metrics = (await get(service, "/metrics")).text
        file_bytes = (tmp_path / "journal.sqlite3").stat().st_size

    assert figures["journal_bytes"] >= file_bytes > 0
    assert figures["disk_free_bytes"] > 0
    assert "written_bytes_per_day" in figures
    for name in (
        "hallhub_journal_disk_bytes",
        "hallhub_disk_free_bytes",
        "hallhub_disk_written_bytes_per_day",
        "hallhub_retention_pruned_rows",
    ):
        assert f"\n{name}" in metrics, name
