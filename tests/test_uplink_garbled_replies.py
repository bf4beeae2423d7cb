"""Whatever the city (or something in front of it) answers, the uplink keeps running
and keeps the events.

The city here is a small HTTP server on loopback that answers like a broken city
platform would; the hub side is the real journal and uplink.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.clock import ManualClock, SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.outbox import Outbox
from sync.uplink import BACKOFF_CAP_SECONDS, Uplink

HUB = "hall-1"


def nan_server_time(batch: dict[str, Any]) -> bytes:
    """Acks, but a `server_time` of NaN (Python's json reads the bare token NaN, so
    httpx's `response.json()` takes it as a float)."""
    return b'{"acks": {"alarm": 0}, "server_time": NaN}'


def one_below_base(batch: dict[str, Any]) -> bytes:
    """Each lane acknowledged one below the base it was sent: a city that says, batch
    after batch, that it holds less than it confirmed before."""
    acks = {lane: max(0, part["base"] - 1) for lane, part in batch["lanes"].items()}
    return json.dumps({"acks": acks}).encode()


class BrokenCity:
    """Answers every batch 200 with what `answer` makes of the batch."""

    def __init__(self, answer: Callable[[dict[str, Any]], bytes] = nan_server_time) -> None:
        self.requests = 0
        self._answer = answer
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
        batch = json.loads(gzip.decompress(await request.body()))
        return Response(self._answer(batch), media_type="application/json")

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


async def wait_for_requests(city: BrokenCity, count: int) -> None:
    deadline = time.monotonic() + 10
    while city.requests < count:
        assert time.monotonic() < deadline, f"only {city.requests} requests"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # real time: an uplink that spins sends many more meanwhile


async def test_a_city_that_keeps_acknowledging_below_base_is_backed_off_from(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A city restored from a backup answers an ack below the base once; the hub moves
    the lane back and sends again. A city that answers below base again right after
    that contradicts itself: each attempt moves the lane back once, then counts as an
    outage with backoff (time driven by the test), never a loop of requests."""
    city = BrokenCity(one_below_base)
    city.start()
    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    clock = ManualClock()
    uplink = Uplink(journal, city.url, "hall-1.k1", b"\x11" * 32, clock)
    try:
        for n in range(1, 13):
            await journal.append(
                Observation(f"alarm-{n}", Lane.ALARM, "ta-1", "toilet_alarm", "call", {}, n, True)
            )
        await Outbox(journal).record_acks({Lane.ALARM: 10}, 1.0)
        with caplog.at_level(logging.INFO, logger="sync.uplink"):
            task = asyncio.create_task(uplink.run())
            await wait_for_requests(city, 2)
            first = (city.requests, uplink.status()["alarm"]["acked_seq"])
            state = uplink.link_status()["state"]

            await clock.advance(BACKOFF_CAP_SECONDS)
            await wait_for_requests(city, 4)
            second = (city.requests, uplink.status()["alarm"]["acked_seq"])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        journal.close()
        city.stop()

    assert first == (2, 9), "one rewind (10 to 9), then the contradiction backs off"
    assert state == "outage"
    assert second == (4, 8)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "city sync failing (outage): city acknowledged below the base again right after"
        " a rewind (alarm); retrying"
    ]
