"""Whatever the city (or something in front of it) answers, the uplink keeps running
and keeps the events.

The city here is a small HTTP server on loopback that answers like a broken city
platform would; the hub side is the real journal and uplink.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.clock import SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.uplink import Uplink

HUB = "hall-1"


class BrokenCity:
    """Answers every batch 200 with acks, but a `server_time` of NaN (Python's json
    reads the bare token NaN, so httpx's `response.json()` takes it as a float)."""

    def __init__(self) -> None:
        self.requests = 0
        app = Starlette(routes=[Route("/v1/hubs/{hub}/batches", self._batch, methods=["POST"])])
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    async def _batch(self, request: Request) -> Response:
        self.requests += 1
        await request.body()
        body = b'{"acks": {"alarm": 0}, "server_time": NaN}'
        return Response(body, media_type="application/json")

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def broken_city() -> Iterator[BrokenCity]:
    city = BrokenCity()
    city.start()
    yield city
    city.stop()


async def test_a_garbled_server_time_does_not_stop_the_uplink(
    broken_city: BrokenCity, tmp_path: Path
) -> None:
    """A reply whose `server_time` is NaN (or Infinity) was taken as the clock offset;
    the next signing did int(NaN) and raised ValueError, which the uplink's loop does
    not catch: the uplink task ended and the hub never sent another event until it
    was restarted. A garbled reply must count as an outage like any other."""
    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    uplink = Uplink(
        journal, broken_city.url, "hall-1.k1", b"\x11" * 32, SystemClock(), poll_seconds=0.2
    )
    task = asyncio.create_task(uplink.run())
    try:
        await journal.append(
            Observation("alarm-1", Lane.ALARM, "ta-1", "toilet_alarm", "call", {}, 1.0, True)
        )
        uplink.notify()
        deadline = time.monotonic() + 5
        while broken_city.requests < 3 and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        died = task.done() and not task.cancelled()
        failure = task.exception() if died else None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        journal.close()

    assert not died, f"the uplink task died: {failure!r}"
    assert broken_city.requests >= 3, "the uplink should keep retrying"
