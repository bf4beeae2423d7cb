"""Configuration down and queries from the city, over the hub's own long poll: a
running hub (real Mosquitto, real receiver over HTTP) applies a signed bundle,
keeps the old configuration when a push fails validation or fails at start, and
answers state and event queries."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.broker import ManagedBroker
from hub.clock import SystemClock
from hub.events import Lane
from hub.journal import Journal
from hub.service import HubService
from hub.tickets import TicketRequest
from hub.tickets.errors import UnknownWindowError
from sync.city_config import ApplyResult
from sync.city_store import SQLiteBatchStore
from sync.commands import CommandChannel
from sync.keys import add_key, load_keys
from sync.receiver import BackgroundReceiver, create_app
from sync.uplink import Uplink
from tests.hubkit import DeviceClient, eventually, hub_config

HUB = "hall-test"
ADMIN = "admin-token-for-command-tests"
DEVICES = [{"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1-windows", "window": "W1"}]


def rule_pack(rule_id: str, severity: str = "normal") -> str:
    return (
        "rules:\n"
        f"  - id: {rule_id}\n"
        "    when: {kind: rating_pad, type: rating, fields: {level: {eq: 不满意}}}\n"
        "    then:\n"
        "      - raise:\n"
        "          condition: unhappy_citizen\n"
        f"          severity: {severity}\n"
        "          team: window_lead\n"
    )


# Valid alone, but the hub cannot start on it: it overrides a rule no layer has.
OVERRIDES_A_MISSING_RULE = "overrides:\n  no-such-rule: {enabled: false}\n"


WINDOWS = (
    "categories:\n  A: {name: 综合受理}\n  B: {name: 出入境}\n"
    "windows:\n  W1: {categories: [A]}\n  W2: {categories: [A, B]}\n"
)
SATURDAY_SERVICE = "saturday: {opens: '09:00', closes: '12:00'}\n"
ORDINARY_SATURDAY = dt.date(2026, 12, 5)
DECEMBER_10 = dt.datetime(2026, 12, 10, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()

GOOD_FILES = {
    "rules/city-baseline.yaml": rule_pack("city-unhappy"),
    "schedules.yaml": SATURDAY_SERVICE,
    "windows.yaml": WINDOWS,
    "calendar.yaml": (
        "closures:\n  - {date: 2026-12-31, reason: year-end stocktake}\n"
        "years:\n  2027: {holidays: [2027-01-01], makeup_workdays: []}\n"
    ),
}


@dataclass
class City:
    url: str
    admin: httpx.AsyncClient
    tmp_path: Path

    async def push(self, type_: str, payload: dict[str, Any]) -> str:
        response = await self.admin.post(
            f"/admin/hubs/{HUB}/commands", json={"type": type_, "payload": payload}
        )
        assert response.status_code == 202, response.text
        return str(response.json()["command_id"])

    async def answer(self, command_id: str) -> dict[str, Any]:
        async def answered() -> dict[str, Any] | None:
            command = (await self.admin.get(f"/admin/commands/{command_id}")).json()
            return command["reply"] if command["state"] == "answered" else None

        deadline = time.monotonic() + 10
        while (reply := await answered()) is None:
            assert time.monotonic() < deadline, f"command {command_id} not answered"
            await asyncio.sleep(0.05)
        return reply


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    keys_path = tmp_path / "city-keys.json"
    key = add_key(keys_path, HUB)
    secret_file = tmp_path / "secret.hex"
    secret_file.write_text(key.secret.hex(), encoding="ascii")
    store = SQLiteBatchStore(tmp_path / "city.db")
    app = create_app(store, {key.key_id: key}, admin_token=ADMIN)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    background = BackgroundReceiver(app, sock)
    background.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", secret_file
    background.stop()
    store.close()


def city_section(url: str, secret_file: Path, key_id: str) -> dict[str, Any]:
    return {"url": url, "key_id": key_id, "secret_file": str(secret_file)}


class DecemberClock(SystemClock):
    """The real clock, moved to 10 December 2026: next year's holiday table matters."""

    def __init__(self) -> None:
        super().__init__("assume")
        self._shift = DECEMBER_10 - time.time()

    def wall(self) -> float:
        return time.time() + self._shift


@pytest.fixture
async def hub(
    receiver: tuple[str, Path], broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    url, secret_file = receiver
    config = make_config(tmp_path, broker, unique_topic_root, url, secret_file)
    service = HubService(config, clock=DecemberClock())
    await service.start()
    assert service.ingest.wait_subscribed(10)  # SUBACK: the broker now queues for the hub
    yield service
    await service.stop()


def make_config(
    tmp_path: Path, broker: ManagedBroker, root: str, url: str, secret_file: Path, **extra: Any
) -> Any:
    key_id = next(iter(load_keys(tmp_path / "city-keys.json")))
    return hub_config(
        tmp_path / "hub",
        broker.port,
        root.replace("/", "-"),
        DEVICES,
        city=city_section(url, secret_file, key_id),
        **extra,
    )


@pytest.fixture
async def city(receiver: tuple[str, Path], tmp_path: Path) -> AsyncIterator[City]:
    url, _ = receiver
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, trust_env=False
    ) as admin:
        yield City(url, admin, tmp_path)


def rule_ids(hub: HubService) -> set[str]:
    return {rule.id for rule in hub.rules.rule_set.rules}


async def test_configuration_push_is_applied_and_its_version_reported(
    hub: HubService, city: City
) -> None:
    """A signed bundle with rules, schedules, windows and calendar is validated,
    written as a new version, made active, its rules and calendar take effect at once,
    and the hub reports the active version back."""
    command = await city.push("configure", {"version": "2026.1", "files": GOOD_FILES})
    reply = await city.answer(command)

    assert reply == {"status": "active", "active_version": "2026.1", "problems": []}
    assert "city-unhappy" in rule_ids(hub)
    active = hub.city_config.active_dir()
    assert (
        active is not None and (active / "calendar.yaml").read_text() == GOOD_FILES["calendar.yaml"]
    )
    assert os.readlink(hub.city_config.root / "current") == "versions/2026.1"
    assert hub.calendar.closure(dt.date(2026, 12, 31)) == "year-end stocktake"
    saturday = hub.calendar.hours(ORDINARY_SATURDAY)
    assert saturday is not None and saturday.closes == dt.time(12)
    # In December (the hub's clock) next year's missing table is an alert; the bundle's
    # table clears it at once.
    with hub.journal.reading() as conn:
        missing_table = conn.execute(
            "SELECT COUNT(*) FROM alerts WHERE condition = 'next_year_table_missing'"
            " AND state = 'open'"
        ).fetchone()[0]
    assert missing_table == 0
    assert list(hub.tickets.settings.windows) == ["W1", "W2"]


async def test_push_failing_validation_leaves_the_old_configuration(
    hub: HubService, city: City
) -> None:
    """A bundle whose rule file breaks the rule schema and whose calendar breaks the
    calendar schema is refused with each file and field named; the previous version
    stays active and its rules keep running."""
    await city.answer(await city.push("configure", {"version": "v1", "files": GOOD_FILES}))
    bad = {
        **GOOD_FILES,
        "rules/city-baseline.yaml": rule_pack("city-unhappy", "apocalyptic"),
        "calendar.yaml": "closures:\n  - {date: someday}\n",
    }

    reply = await city.answer(await city.push("configure", {"version": "v2", "files": bad}))

    assert reply["status"] == "rejected" and reply["active_version"] == "v1"
    assert any("rules/city-baseline.yaml" in p and "severity" in p for p in reply["problems"])
    assert any(p.startswith("calendar.yaml") and "date" in p for p in reply["problems"])
    assert hub.city_config.active_version() == "v1"
    assert "city-unhappy" in rule_ids(hub)
    assert not (hub.city_config.root / "versions" / "v2").exists()


async def test_push_failing_at_start_rolls_back(hub: HubService, city: City) -> None:
    """A bundle valid on its own but on which the hub cannot start (it overrides a
    rule no layer has) is switched to, fails to start, and is rolled back: the old
    version is active again and reported, and the old rules still run."""
    await city.answer(await city.push("configure", {"version": "v1", "files": GOOD_FILES}))
    clash = {"rules/city-baseline.yaml": OVERRIDES_A_MISSING_RULE}

    reply = await city.answer(await city.push("configure", {"version": "v2", "files": clash}))

    assert reply["status"] == "rolled_back" and reply["active_version"] == "v1"
    assert "no-such-rule: no such rule" in reply["problems"][0]
    assert hub.city_config.active_version() == "v1"
    assert "city-unhappy" in rule_ids(hub)


async def test_tampered_bundle_is_refused(hub: HubService, city: City) -> None:
    """A bundle whose files do not match its signature is refused; nothing changes."""
    signed = {
        "version": "v9",
        "files": GOOD_FILES,
        "issued_at": time.time(),
        "key_id": "x",
        "signature": "00" * 32,
    }
    result = hub.city_config.apply(signed, {}, lambda folder: None)

    assert result == ApplyResult("rejected", None, ["not signed with a key of this hub"])
    assert hub.city_config.active_version() is None


async def test_hub_that_cannot_boot_on_its_city_configuration_rolls_back(
    receiver: tuple[str, Path], broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """If the hub is restarted on a city configuration it cannot start on (switched to
    just before a crash), it goes back to the previous version and starts."""
    url, secret_file = receiver
    config = make_config(tmp_path, broker, unique_topic_root, url, secret_file)
    first = HubService(config)
    store = first.city_config
    (store.root / "versions" / "v1" / "rules").mkdir(parents=True)
    (store.root / "versions" / "v1" / "rules" / "a.yaml").write_text(rule_pack("city-unhappy"))
    (store.root / "versions" / "v2" / "rules").mkdir(parents=True)
    (store.root / "versions" / "v2" / "rules" / "a.yaml").write_text(OVERRIDES_A_MISSING_RULE)
    store._point("previous", "v1")
    store._point("current", "v2")

    second = HubService(config)

    assert second.city_config.active_version() == "v1"
    assert "city-unhappy" in rule_ids(second)


async def test_city_queries_hub_state_and_events(
    hub: HubService, city: City, broker: ManagedBroker
) -> None:
    """The city asks for the hub's state (devices, open alerts, sync) and for the
    rating lane's events after a seq, and gets both back over the long poll."""
    device = DeviceClient(broker.port, "pad-1-test")
    try:
        root = hub.config.mqtt.topic_root
        for level in ("满意", "基本满意", "满意"):
            device.publish(f"{root}/pad-1/rating", {"level": level, "window": "W1"})
        await eventually(lambda: hub.journal.last_seqs()[Lane.RATING] >= 3)
    finally:
        device.close()

    state = await city.answer(await city.push("query_state", {}))
    events = await city.answer(
        await city.push("query_events", {"lane": "rating", "after_seq": 1, "limit": 10})
    )

    assert state["status"] == "ok" and state["hub_id"] == HUB
    assert [d["device_id"] for d in state["devices"]] == ["pad-1"]
    assert "rating" in state["sync"]
    with hub.journal.reading() as conn:
        active = {
            row[0] for row in conn.execute("SELECT alert_id FROM alerts WHERE state = 'open'")
        }
    assert {alert["alert_id"] for alert in state["open_alerts"]} == active
    assert [e["seq"] for e in events["events"]] == [2, 3, 4, 5, 6]
    assert events["events"][0]["data"]["level"] == "基本满意"


async def test_a_failing_command_is_answered_and_the_channel_stays_up(
    receiver: tuple[str, Path], city: City, tmp_path: Path
) -> None:
    """A handler that fails (here: the disk refuses a write) is answered `failed` with
    the reason; an unknown command type is answered `unsupported`; the next command on
    the same channel is still carried out, and a command given again after its reply
    was recorded is not carried out twice."""
    url, secret_file = receiver
    key_id = next(iter(load_keys(tmp_path / "city-keys.json")))
    journal = Journal(tmp_path / "channel-hub.db", HUB)
    journal.open()
    calls: list[str] = []

    async def broken(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append("broken")
        raise OSError(28, "No space left on device")

    async def state(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append("state")
        return {"status": "ok"}

    secret = bytes.fromhex(secret_file.read_text(encoding="ascii"))
    uplink = Uplink(journal, url, key_id, secret, SystemClock())
    channel = CommandChannel(
        uplink, url, HUB, {"configure": broken, "query_state": state}, SystemClock()
    )
    try:
        failing = await city.push("configure", {"version": "v1", "files": GOOD_FILES})
        await channel.poll_once(wait=0)
        unknown = await city.push("query_events", {"lane": "rating"})
        await channel.poll_once(wait=0)
        fine = await city.push("query_state", {})
        await channel.poll_once(wait=0)
        answers = [await city.answer(c) for c in (failing, unknown, fine)]
        await channel._answer({"command_id": fine, "type": "query_state", "payload": {}})
    finally:
        await channel.aclose()
        await uplink.aclose()
        journal.close()

    assert answers[0] == {"status": "failed", "problems": ["[Errno 28] No space left on device"]}
    assert answers[1] == {"status": "unsupported", "type": "query_events"}
    assert answers[2] == {"status": "ok"}
    assert calls == ["broken", "state"]


async def test_a_command_from_a_city_on_a_new_database_is_carried_out(tmp_path: Path) -> None:
    """Command ids are random, never a counter: a receiver started again on a new
    database (or a restored backup) gives its first command an id the hub has not
    seen, so a hub that answered the old database's first command carries out the
    new one instead of replaying its remembered answer."""
    keys_path = tmp_path / "city-keys.json"
    key = add_key(keys_path, HUB)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    journal = Journal(tmp_path / "channel-hub.db", HUB)
    journal.open()
    calls: list[dict[str, Any]] = []

    async def state(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(payload)
        return {"status": "ok", "asked": payload.get("n")}

    uplink = Uplink(journal, url, key.key_id, key.secret, SystemClock())
    channel = CommandChannel(uplink, url, HUB, {"query_state": state}, SystemClock())
    answers = []
    commands = []
    try:
        for n in (1, 2):  # the same port, a new receiver and a new database each time
            if n == 2:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
            store = SQLiteBatchStore(tmp_path / f"city-{n}.db")
            background = BackgroundReceiver(
                create_app(store, {key.key_id: key}, admin_token=ADMIN), sock
            )
            background.start()
            try:
                async with httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, trust_env=False
                ) as admin:
                    city = City(url, admin, tmp_path)
                    command = await city.push("query_state", {"n": n})
                    await channel.poll_once(wait=0)
                    answers.append(await city.answer(command))
                    commands.append(command)
            finally:
                background.stop()
                store.close()
    finally:
        await channel.aclose()
        journal.close()

    assert all(re.fullmatch(r"c-[0-9a-f]{16}", command) for command in commands), commands
    assert commands[0] != commands[1]
    assert [call["n"] for call in calls] == [1, 2]
    assert [answer["asked"] for answer in answers] == [1, 2]


def window_states(hub: HubService) -> dict[str, str]:
    return {window["window"]: window["state"] for window in hub.tickets.view()["windows"]}


async def test_the_citys_windows_serve_at_once_and_a_dropped_window_is_closed(
    hub: HubService, city: City
) -> None:
    """The city's window assignments reach the queue without a restart: its windows
    call its categories, and the city sees them, with the hours, in the hub's state.
    A later version without a window closes that window, which finishes the ticket
    it was serving; the window is then refused, and a restarted hub starts with the
    city's windows."""
    await city.answer(await city.push("configure", {"version": "v1", "files": GOOD_FILES}))
    await hub.tickets.set_window_state("W2", "open", "test")
    issued = await hub.tickets.issue("printer-1", TicketRequest("r-1", "B"))
    called = await hub.tickets.call_next("W2", "test")
    state = await city.answer(await city.push("query_state", {}))
    only_w1 = "categories: {A: {name: 综合受理}}\nwindows:\n  W1: {categories: [A]}\n"

    reply = await city.answer(
        await city.push("configure", {"version": "v2", "files": {"windows.yaml": only_w1}})
    )

    assert issued["ticket"] == "B001" and called is not None and called["ticket"] == "B001"
    assert {"window": "W2", "state": "open", "serving": "B001", "categories": ["A", "B"]} in (
        state["queue"]["windows"]
    )
    assert state["opening_hours"]["saturday"]["closes"] == "12:00:00"
    assert reply["status"] == "active"
    assert window_states(hub) == {"W1": "closed"}
    with hub.journal.reading() as conn:
        ticket = conn.execute("SELECT state FROM tickets WHERE label = 'B001'").fetchone()
        audit = conn.execute(
            "SELECT actor, detail FROM audit_trail WHERE action = 'queue.closed' AND target = 'W2'"
        ).fetchone()
    assert ticket["state"] == "served"
    assert audit["actor"] == "city" and "unassigned" in audit["detail"]
    with pytest.raises(UnknownWindowError):
        await hub.tickets.call_next("W2", "test")
    assert list(HubService(hub.config).tickets.settings.windows) == ["W1"]


async def test_the_halls_own_windows_sit_on_the_citys(
    receiver: tuple[str, Path],
    broker: ManagedBroker,
    tmp_path: Path,
    unique_topic_root: str,
    city: City,
) -> None:
    """A window the hall configures itself keeps the hall's categories; the city's
    other windows join it. A city version whose window serves a category neither
    side defines cannot start and is rolled back, leaving the windows as they were."""
    url, secret_file = receiver
    tickets = {"categories": {"A": {"name": "综合"}}, "windows": {"W1": {"categories": ["A"]}}}
    config = make_config(tmp_path, broker, unique_topic_root, url, secret_file, tickets=tickets)
    hub = HubService(config)
    await hub.start()
    city_windows = "categories: {B: {name: 出入境}}\nwindows:\n  W1: {categories: [B]}\n"
    city_windows += "  W3: {categories: [B]}\n"
    unknown = "windows:\n  W9: {categories: [Z]}\n"
    try:
        first = await city.answer(
            await city.push("configure", {"version": "v1", "files": {"windows.yaml": city_windows}})
        )
        second = await city.answer(
            await city.push("configure", {"version": "v2", "files": {"windows.yaml": unknown}})
        )
        windows = {name: w.categories for name, w in hub.tickets.settings.windows.items()}
    finally:
        await hub.stop()

    assert first["status"] == "active"
    assert second["status"] == "rolled_back" and second["active_version"] == "v1"
    assert "window W9 serves unknown categories ['Z']" in second["problems"][0]
    assert windows == {"W1": ("A",), "W3": ("B",)}


async def test_opening_hours_stated_in_both_calendar_and_schedule_are_refused(
    hub: HubService, city: City
) -> None:
    """Hours belong to one file of a bundle: stated twice, which wins would be a guess,
    so the bundle is refused and the hall keeps its hours."""
    files = {"calendar.yaml": SATURDAY_SERVICE, "schedules.yaml": SATURDAY_SERVICE}

    reply = await city.answer(await city.push("configure", {"version": "v1", "files": files}))

    assert reply["status"] == "rejected" and reply["active_version"] is None
    assert any("saturday is stated in both" in problem for problem in reply["problems"])
    assert hub.calendar.hours(ORDINARY_SATURDAY) is None


async def test_a_version_number_is_reused_only_as_the_city_would_expect(
    hub: HubService, city: City
) -> None:
    """A version that was rolled back can be pushed again with fixed files, and those
    files run; a rollback leaves `previous` where it was; the active version pushed
    again with other files is refused rather than reported active unchanged."""

    async def push(version: str, files: dict[str, str]) -> dict[str, Any]:
        return await city.answer(await city.push("configure", {"version": version, "files": files}))

    await push("v1", GOOD_FILES)
    await push("v2", {"rules/city-baseline.yaml": rule_pack("city-v2")})
    failed = await push("v3", {"rules/city-baseline.yaml": OVERRIDES_A_MISSING_RULE})
    previous_after_rollback = os.readlink(hub.city_config.root / "previous")
    fixed = await push("v3", {"rules/city-baseline.yaml": rule_pack("city-v3")})
    changed_active = await push("v3", {"rules/city-baseline.yaml": rule_pack("city-other")})

    assert failed["status"] == "rolled_back" and failed["active_version"] == "v2"
    assert previous_after_rollback == "versions/v1"
    assert fixed["status"] == "active" and "city-v3" in rule_ids(hub)
    assert changed_active["status"] == "rejected" and changed_active["active_version"] == "v3"
    assert "city-other" not in rule_ids(hub)


async def test_an_old_signed_bundle_replayed_after_a_newer_one_is_refused(
    hub: HubService, city: City
) -> None:
    """A bundle carries the city's time, under its signature. One captured when v1 was
    pushed and replayed once v2 is in force (by someone who could inject it into the
    poll) is refused, and v2 keeps running; the city sending v1 again itself is fine."""
    first = await city.push("configure", {"version": "v1", "files": GOOD_FILES})
    await city.answer(first)
    captured = (await city.admin.get(f"/admin/commands/{first}")).json()["payload"]
    v2 = {"rules/city-baseline.yaml": rule_pack("city-v2")}
    await city.answer(await city.push("configure", {"version": "v2", "files": v2}))
    keys = {key.key_id: key for key in hub.uplink.signing_keys()}  # type: ignore[union-attr]

    replayed = hub.city_config.prepare(captured, keys)
    again = await city.answer(await city.push("configure", {"version": "v1", "files": GOOD_FILES}))

    assert replayed == ApplyResult(
        "rejected",
        "v2",
        ["issued before the configuration in force: a replayed bundle is refused"],
    )
    assert again["status"] == "active" and again["active_version"] == "v1"
