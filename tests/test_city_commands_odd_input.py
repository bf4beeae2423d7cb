"""The command channel and configuration down, given odd but well-formed input.

A running hub (real Mosquitto, real receiver over HTTP on loopback) is given odd but
well-formed commands and bundles through the reference receiver's admin API.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

import tests.test_city_commands as cc
from hub.broker import ManagedBroker
from hub.events import Lane, Observation, hub_event_id
from hub.service import HubService
from sync.keys import load_keys
from sync.poison import set_aside
from sync.signing import sign_request

# The running hub and the city, exactly as the command tests set them up.
receiver = cc.receiver
hub = cc.hub
city = cc.city


async def test_a_query_for_events_after_a_huge_seq_does_not_kill_the_channel(
    hub: HubService, city: cc.City
) -> None:
    """`query_events` with an `after_seq` past SQLite's integer range (valid JSON, an
    integer) must be answered (say `failed`), and the channel must carry on. It raised
    OverflowError, which neither `events_after` nor the channel catches: the command
    channel task died, every later command stayed pending, and since the city gives a
    pending command again, the channel dies again at every hub restart."""
    bad = await city.push("query_events", {"lane": "alarm", "after_seq": 2**64})
    later = await city.push("query_state", {})

    answer = await city.answer(bad)
    state = await city.answer(later)

    assert answer["status"] in ("failed", "ok")
    assert state["status"] == "ok"


async def test_query_events_never_returns_more_than_its_limit(
    hub: HubService, city: cc.City
) -> None:
    """The protocol caps a query at 1000 events. A negative `limit` was passed to
    SQLite as is, where LIMIT -1 means no limit: the hub read and sent the whole lane,
    however long (a backlog of days is millions of events, far past the hub's memory
    budget and the receiver's 8 MiB body limit)."""

    def fill(conn: sqlite3.Connection) -> None:
        for n in range(1200):
            hub.journal.insert_event(
                conn,
                Observation(
                    hub_event_id(),
                    Lane.TELEMETRY,
                    "pad-1",
                    "rating_pad",
                    "reading",
                    {"n": n},
                    time.time(),
                    True,
                ),
            )

    await hub.journal.write(fill)

    reply = await city.answer(
        await city.push("query_events", {"lane": Lane.TELEMETRY.value, "after_seq": 0, "limit": -1})
    )

    assert reply["status"] == "failed" or len(reply["events"]) <= 1000


async def test_a_version_pushed_again_with_other_content_is_not_reported_active(
    hub: HubService, city: cc.City
) -> None:
    """A version the hub already holds, pushed again with different (validly signed)
    files, was answered `active` while the hub kept running the old files: the city
    is told its new content is live when it is not. The hub must either apply the new
    content or refuse it, and never report it active unapplied."""
    first = {"rules/city-baseline.yaml": cc.rule_pack("city-unhappy")}
    second = {"rules/city-baseline.yaml": cc.rule_pack("city-unhappy-v2")}
    assert (await city.answer(await city.push("configure", {"version": "v1", "files": first})))[
        "status"
    ] == "active"

    reply = await city.answer(await city.push("configure", {"version": "v1", "files": second}))

    active = hub.city_config.active_dir()
    assert active is not None
    on_disk = (active / "rules" / "city-baseline.yaml").read_text(encoding="utf-8")
    running = cc.rule_ids(hub)
    assert reply["status"] == "rejected"
    assert on_disk == first["rules/city-baseline.yaml"]
    assert "city-unhappy" in running and "city-unhappy-v2" not in running
    assert os.readlink(hub.city_config.root / "current") == "versions/v1"


async def test_a_version_pushed_again_after_another_is_not_run_with_its_old_content(
    hub: HubService, city: cc.City
) -> None:
    """v1, then v2, then v1 again with new content: the hub switched back to the v1
    folder it kept on disk, ran the old v1 files and answered `active`. v1 is kept,
    unchanged, to roll back to, so the push is refused."""
    old = {"rules/city-baseline.yaml": cc.rule_pack("city-old")}
    other = {"rules/city-baseline.yaml": cc.rule_pack("city-other")}
    new = {"rules/city-baseline.yaml": cc.rule_pack("city-new")}
    for version, files in (("v1", old), ("v2", other)):
        reply = await city.answer(
            await city.push("configure", {"version": version, "files": files})
        )
        assert reply["status"] == "active"

    reply = await city.answer(await city.push("configure", {"version": "v1", "files": new}))

    running = cc.rule_ids(hub)
    assert reply["status"] == "rejected" and reply["active_version"] == "v2"
    assert "city-other" in running and "city-new" not in running


async def test_a_file_name_with_a_trailing_newline_is_refused(
    hub: HubService, city: cc.City
) -> None:
    """Bundle file names are checked with a pattern ending in `$`, which also matches
    before a final newline: "windows.yaml\\n" passed as an allowed name, was written
    under that name, skipped by validation (it does not end in .yaml) and by the hub
    (it reads "windows.yaml"), and the bundle was answered `active`. The city believes
    its window assignments are live; none are. Such a name must be refused."""
    files = {"windows.yaml\n": cc.WINDOWS}

    reply = await city.answer(await city.push("configure", {"version": "v1", "files": files}))

    assert reply["status"] == "rejected", (reply, list(hub.tickets.settings.windows))


async def test_a_version_with_a_trailing_newline_is_refused(hub: HubService, city: cc.City) -> None:
    """The version pattern has the same hole: "v1\\n" became a folder and a symlink
    target with a newline in its name, and a version the city cannot tell from v1."""
    reply = await city.answer(
        await city.push("configure", {"version": "v1\n", "files": cc.GOOD_FILES})
    )

    assert reply["status"] == "rejected", reply


async def answer_within(city: cc.City, command_id: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        command = (await city.admin.get(f"/admin/commands/{command_id}")).json()
        if command["state"] == "answered":
            return dict(command["reply"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"command {command_id} not answered in {seconds} s")


def many_rules(count: int) -> str:
    rule = (
        "  - id: city-r{n}\n"
        "    when: {{kind: rating_pad, type: rating, fields: {{level: {{eq: 不满意}}}}}}\n"
        "    then:\n"
        "      - raise: {{condition: unhappy_citizen, severity: normal, team: window_lead}}\n"
    )
    return "rules:\n" + "".join(rule.format(n=n) for n in range(count))


async def test_a_large_bundle_does_not_freeze_the_hub(hub: HubService, city: cc.City) -> None:
    """A bundle of one rule file of about 400 KB (well under the 1 MiB a file may be,
    and 200 files may come) is parsed, validated, checked against the hall's layers
    and loaded, in pure-Python YAML. On the hub's event loop (the loop that runs the
    rules, the alerts and their escalation, the console and the uplink) that stood
    everything still for seconds; it is done in a thread, and the loop keeps ticking."""
    files = {"rules/city-many.yaml": many_rules(2000)}
    assert len(files["rules/city-many.yaml"].encode()) < 1024 * 1024
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        reply = await answer_within(
            city, await city.push("configure", {"version": "big-1", "files": files}), 180
        )
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)

    assert reply["status"] == "active", reply
    assert max(gaps) < 1.0, f"the hub's event loop stood still for {max(gaps):.1f} s"


async def test_the_city_learns_of_a_rollback_at_boot(
    receiver: tuple[str, Path],
    city: cc.City,
    broker: ManagedBroker,
    tmp_path: Path,
    unique_topic_root: str,
) -> None:
    """v1 then v2 are pushed and reported active. Hall IT then adds a rule file of its
    own that overrides a rule only v1 has, and restarts the hub: v2 no longer starts,
    the hub rolls back to v1 at boot (as documented) and runs v1. The city's status
    showed v2 for good when only a `configure` reply reported a version; the hub now
    reports what it runs as its command channel starts."""
    url, secret_file = receiver
    config = cc.make_config(tmp_path, broker, unique_topic_root, url, secret_file)
    first = HubService(config)
    await first.start()
    try:
        for version, rule_id in (("v1", "city-a"), ("v2", "city-b")):
            files = {"rules/city-baseline.yaml": cc.rule_pack(rule_id)}
            reply = await city.answer(
                await city.push("configure", {"version": version, "files": files})
            )
            assert reply["status"] == "active"
    finally:
        await first.stop()

    hall_rules = tmp_path / "hall-rules.yaml"
    hall_rules.write_text("overrides:\n  city-a: {enabled: false}\n", encoding="utf-8")
    config = cc.make_config(
        tmp_path, broker, unique_topic_root, url, secret_file, rule_files=[str(hall_rules)]
    )
    second = HubService(config)
    await second.start()
    try:
        assert second.city_config.active_version() == "v1"  # rolled back at boot
        deadline = time.monotonic() + 10
        reported = await city_status_active_config(url, secret_file, tmp_path)
        while reported != "v1" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            reported = await city_status_active_config(url, secret_file, tmp_path)
    finally:
        await second.stop()

    assert reported == "v1", f"the city still shows {reported!r} active"


async def city_status_active_config(url: str, secret_file: Path, tmp_path: Path) -> Any:
    key_id = next(iter(load_keys(tmp_path / "city-keys.json")))
    secret = bytes.fromhex(secret_file.read_text(encoding="ascii"))
    path = f"/v1/hubs/{cc.HUB}/status"
    header = sign_request(key_id, secret, "GET", path, b"", time.time())
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        response = await client.get(path, headers={"Authorization": header})
    assert response.status_code == 200, response.text
    return response.json()["active_config"]


async def test_an_event_quarantined_just_before_a_crash_still_gets_its_alert(
    receiver: tuple[str, Path], broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """Setting an alarm aside commits the quarantine entry, then raises the alert in
    a second write. A hub killed between the two (or whose alert write failed) kept
    the alarm quarantined with no alert, for good: nothing looks for open quarantine
    entries without one, so no person is ever told. The journal below is exactly what
    that kill leaves: the entry committed by `set_aside`, no alert."""
    url, secret_file = receiver
    config = cc.make_config(tmp_path, broker, unique_topic_root, url, secret_file)
    first = HubService(config)
    await first.start()
    try:
        appended = await first.journal.append(
            Observation(hub_event_id(), Lane.ALARM, "pad-1", "rating_pad", "call", {}, 1.0, True)
        )
        event = appended.event
        await first.journal.write(
            lambda conn: set_aside(conn, event, "HTTP 422: rejected_event", time.time())
        )
    finally:
        await first.stop()

    second = HubService(config)
    await second.start()
    try:
        condition = f"sync_quarantine:alarm:{event.seq}"
        deadline = time.monotonic() + 10
        while not (found := open_alerts(second, condition)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await second.stop()

    assert found, "an open quarantine entry without an alert: no person is told"


def open_alerts(hub: HubService, condition: str) -> list[Any]:
    with hub.journal.reading() as conn:
        return conn.execute(
            "SELECT alert_id FROM alerts WHERE condition = ? AND state != 'resolved'",
            (condition,),
        ).fetchall()
