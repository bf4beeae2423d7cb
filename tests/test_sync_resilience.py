"""Sync survives what the field does to it: replaced boxes and garbled replies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hub.clock import SystemClock
from hub.events import Lane, Observation, hub_event_id
from hub.journal import Journal
from sync.uplink import Uplink
from tests.test_uplink import HUB, KEY, City


def alarm(n: int) -> Observation:
    return Observation(
        hub_event_id(), Lane.ALARM, "alarm-1", "toilet_alarm", "call", {"n": n}, time.time(), True
    )


async def drain(journal: Journal, url: str) -> None:
    uplink = Uplink(journal, url, KEY.key_id, KEY.secret, SystemClock("assume"))
    while await uplink.drain_once():
        pass
    await uplink.aclose()


async def test_replaced_hub_box_with_a_fresh_journal_loses_nothing_at_the_city(
    tmp_path: Path,
) -> None:
    """A new box (fresh journal, same hub id and key) starts a new epoch, so its
    events are stored rather than taken for repeats of the old box's sequences."""
    city = City(tmp_path)
    city.start()
    try:
        old = Journal(tmp_path / "old" / "journal.sqlite3", HUB)
        old.open()
        for n in range(5):
            await old.append(alarm(n))
        await drain(old, city.url)
        old.close()

        new = Journal(tmp_path / "new" / "journal.sqlite3", HUB)
        new.open()
        fresh = [alarm(100 + n) for n in range(3)]
        for observation in fresh:
            await new.append(observation)
        await drain(new, city.url)
        new.close()

        stored = {row[2] for row in city.rows()}
        assert new.epoch != old.epoch
        assert {o.event_id for o in fresh} <= stored
    finally:
        city.close()


async def test_a_garbled_reply_is_an_outage_not_the_end_of_sync(tmp_path: Path) -> None:
    """A reply claiming gzip but holding junk (a broken proxy) is retried; sync goes on."""
    hits = 0

    async def broken_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        hits += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        body = b"not gzip at all"
        writer.write(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(broken_proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    journal = Journal(tmp_path / "journal.sqlite3", HUB)
    journal.open()
    uplink = Uplink(
        journal, f"http://127.0.0.1:{port}", KEY.key_id, KEY.secret, SystemClock("assume")
    )
    task = asyncio.create_task(uplink.run())
    try:
        await journal.append(alarm(1))
        deadline = time.monotonic() + 10
        while hits < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert hits >= 2, "the uplink did not retry after a garbled reply"
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await uplink.aclose()
        server.close()
        await server.wait_closed()
        journal.close()
