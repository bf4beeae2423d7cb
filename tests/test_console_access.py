"""Console access end to end: users, sessions with CSRF, roles, brake, audit, live feed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from hub.broker import ManagedBroker
from hub.console_access import ConsoleAccounts, role_allows
from hub.service import HubService
from hub.sessions import FAILURES_ALLOWED, SESSION_COOKIE
from hub.users import Role, UserError, UserStore
from tests.hubkit import DeviceClient, hub_config, running_hub

DEVICES = [
    {"id": "alarm-1", "model": "toilet-alarm-ta1", "zone": "f1-accessible-wc", "floor": 1},
    {"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1-windows", "window": "W1"},
]
PASSWORD = "correct horse battery"


@pytest.fixture
async def hub(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    users = UserStore.in_state_dir(tmp_path / "hub")
    for name, role in (("ops", "operator"), ("eve", "viewer"), ("chief", "admin")):
        users.add(name, role, PASSWORD)
    async with running_hub(broker.port, tmp_path / "hub", unique_topic_root, DEVICES) as service:
        yield service


async def sign_in(http: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    answer = await http.post("/login", data={"user": name, "password": password})
    assert answer.status_code == 303, answer.text
    http.cookies.set(SESSION_COOKIE, answer.cookies[SESSION_COOKIE])
    return str((await http.get("/api/session")).json()["csrf"])


def test_first_start_shows_a_random_admin_password_once_and_never_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No default password: the first start makes `admin` with a random password, shown
    once on the terminal, stored only as an argon2 hash in a 0600 file, never logged."""
    caplog.set_level(logging.DEBUG)
    accounts = ConsoleAccounts(tmp_path, clock=None)  # type: ignore[arg-type]
    terminal = io.StringIO()

    assert accounts.create_first_admin(terminal)
    assert not accounts.create_first_admin(terminal)  # second start: nothing new, nothing shown

    shown = terminal.getvalue()
    password = shown.split("password ")[1].split(" ")[0]
    stored = accounts.users.path.read_text(encoding="utf-8")
    assert shown.count("password ") == 1 and len(password) >= 20
    assert password not in stored and "$argon2id$" in stored
    assert stat.S_IMODE(accounts.users.path.stat().st_mode) == 0o600
    assert password not in caplog.text
    assert accounts.users.verify("admin", password) is not None
    assert accounts.users.verify("admin", password + "x") is None


def test_user_store_refuses_bad_changes_and_keeps_the_last_admin(tmp_path: Path) -> None:
    """Short passwords, unknown roles, taken names and removing the last admin are refused
    with a message, and the file is left as it was."""
    users = UserStore(tmp_path / "users.json")
    users.add("admin", "admin", PASSWORD)
    before = users.path.read_text(encoding="utf-8")
    for bad in (
        lambda: users.add("short", "viewer", "12345"),
        lambda: users.add("who", "janitor", PASSWORD),
        lambda: users.add("admin", "viewer", PASSWORD),
        lambda: users.remove("admin"),
        lambda: users.set_password("nobody", PASSWORD),
    ):
        with pytest.raises(UserError):
            bad()
    assert users.path.read_text(encoding="utf-8") == before


async def test_session_posts_need_the_csrf_token_and_the_role_and_are_audited(
    hub: HubService, broker: ManagedBroker
) -> None:
    """A signed-in operator acknowledges an alert only with the session's CSRF token; a
    viewer is refused; the change lands in the audit trail under the operator's name."""
    device = DeviceClient(broker.port, "alarm-1-test")
    device.publish(f"{hub.config.mqtt.topic_root}/alarm-1/call", {"source": "cord"})
    device.close()
    async with httpx.AsyncClient(base_url=hub.console_url) as viewer:
        viewer_csrf = await sign_in(viewer, "eve")
        alert_id = await _first_open_alert(viewer)
        refused_role = await viewer.post(
            f"/api/alerts/{alert_id}/acknowledge", headers={"X-CSRF-Token": viewer_csrf}
        )
    async with httpx.AsyncClient(base_url=hub.console_url) as ops:
        ops_csrf = await sign_in(ops, "ops")
        no_token = await ops.post(f"/api/alerts/{alert_id}/acknowledge", json={})
        wrong_token = await ops.post(
            f"/api/alerts/{alert_id}/acknowledge", headers={"X-CSRF-Token": "forged"}, json={}
        )
        done = await ops.post(
            f"/api/alerts/{alert_id}/acknowledge", headers={"X-CSRF-Token": ops_csrf}, json={}
        )
        bad_since = await ops.get("/api/audit?since=yesterday")
        trail = await ops.get("/api/audit")

    assert refused_role.status_code == 403
    assert bad_since.status_code == 400 and trail.status_code == 200
    assert no_token.status_code == 403 and wrong_token.status_code == 403
    assert done.status_code == 200 and done.json()["alert"]["state"] == "acknowledged"
    entries = hub.audit.entries()
    assert any(e["actor"] == "ops" for e in trail.json()["entries"])
    assert any(
        e.actor == "ops" and e.target == f"/api/alerts/{alert_id}/acknowledge" for e in entries
    )
    assert not any(e.actor == "eve" and "acknowledge" in e.target for e in entries)


async def _first_open_alert(http: httpx.AsyncClient) -> int:
    async def found() -> int | None:
        alerts = (await http.get("/api/alerts?active=1")).json()["alerts"]
        return alerts[0]["alert_id"] if alerts else None

    for _ in range(100):
        alert_id = await found()
        if alert_id is not None:
            return alert_id
        await asyncio.sleep(0.1)
    raise AssertionError("no alert opened")


async def test_repeated_wrong_passwords_lock_the_sign_in(hub: HubService) -> None:
    """After a few wrong passwords even the right one is refused (429) for a while, the
    form may not be framed by another site, and the API stays closed without a session."""
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        wrong = [
            (await http.post("/login", data={"user": "ops", "password": "guess-guess-1"}))
            for _ in range(FAILURES_ALLOWED)
        ]
        locked = await http.post("/login", data={"user": "ops", "password": PASSWORD})
        devices = await http.get("/api/devices")
    assert [answer.status_code for answer in wrong] == [401] * FAILURES_ALLOWED
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert "frame-ancestors 'none'" in locked.headers["content-security-policy"]
    assert devices.status_code == 401


async def test_every_route_but_healthz_and_login_needs_credentials(hub: HubService) -> None:
    """Without a session or token, every console route refuses (401, or a redirect to the
    sign-in page for the web pages); /healthz and /login answer."""
    app = hub._console.config.app  # type: ignore[union-attr]
    routes = [r for r in app.routes if isinstance(r, Route)]
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        for route in routes:
            path = route.path.replace("{alert_id:int}", "1").replace("{silence_id:int}", "1")
            path = path.replace("{device_id}", "pad-1").replace("{rule_id}", "x")
            path = path.replace("{page}", "overview").replace("{name}", "console.js")
            for method in route.methods or ():
                if method == "HEAD":
                    continue
                answer = await http.request(method, path)
                if path in ("/healthz", "/login"):
                    assert answer.status_code in (200, 401), (method, path)
                    continue
                assert answer.status_code in (401, 303), (method, path, answer.status_code)
                if answer.status_code == 303:
                    assert answer.headers["location"] == "/login"


async def test_metrics_can_be_opened_to_the_scraper(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """With console.metrics_auth false, /metrics answers without a token; the API does not."""
    root = unique_topic_root.replace("/", "-")
    config = hub_config(tmp_path / "hub", broker.port, root, DEVICES)
    config.console.metrics_auth = False
    service = HubService(config)
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=service.console_url) as http:
            metrics = await http.get("/metrics")
            api = await http.get("/api/devices")
    finally:
        await service.stop()
    assert metrics.status_code == 200 and "hallhub_devices_online" in metrics.text
    assert api.status_code == 401


async def test_live_stream_carries_a_committed_device_event(
    hub: HubService, broker: ManagedBroker
) -> None:
    """A page's SSE stream receives a device's message once the journal committed it."""
    seen: list[dict[str, str]] = []
    async with httpx.AsyncClient(base_url=hub.console_url, timeout=10) as http:
        await sign_in(http, "eve")
        async with http.stream("GET", "/api/events/stream") as stream:
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            device = DeviceClient(broker.port, "pad-1-live")
            device.publish(
                f"{hub.config.mqtt.topic_root}/pad-1/rating", {"level": "满意", "window": "W1"}
            )
            device.close()
            async for line in lines:
                if line.startswith("data:") and "pad-1" in line:
                    seen.append(json.loads(line[5:]))
                    break
    assert seen[0]["device_id"] == "pad-1" and seen[0]["kind"] == "rating_pad"


async def test_rules_switch_validate_and_preview_through_the_api(hub: HubService) -> None:
    """An admin disables a rule (it stays off, with the console as its source), a broken
    candidate is refused with its line, a good one validates and previews."""
    async with httpx.AsyncClient(base_url=hub.console_url, timeout=30) as http:
        csrf = await sign_in(http, "chief")
        headers = {"X-CSRF-Token": csrf}
        rule_id = (await http.get("/api/rules")).json()["rules"][0]["id"]
        switched = await http.post(f"/api/rules/{rule_id}/disable", headers=headers)
        rules = (await http.get("/api/rules")).json()["rules"]
        broken = await http.post(
            "/api/rules/validate", headers=headers, json={"rules": "rules:\n  - id: 5\n"}
        )
        good = await http.post(
            "/api/rules/validate", headers=headers, json={"rules": "rules: []\n"}
        )
        preview = await http.post(
            "/api/rules/preview",
            headers=headers,
            json={"rules": "rules: []\n", "from": "2026-01-01", "to": "2026-12-31"},
        )
    rule = next(r for r in rules if r["id"] == rule_id)
    assert switched.status_code == 200 and rule["enabled"] is False
    assert rule["sources"]["enabled"].startswith("console:")
    assert broken.status_code == 422 and "line" in " ".join(broken.json()["errors"])
    assert good.status_code == 200 and rule_id in good.json()["rules"]
    assert preview.status_code == 200 and "by_rule" in preview.json()


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        (Role.VIEWER, "GET", "/api/audit", True),
        (Role.VIEWER, "POST", "/api/alerts/3/acknowledge", False),
        (Role.VIEWER, "POST", "/logout", True),
        (Role.CREW, "POST", "/api/alerts/3/acknowledge", True),
        (Role.CREW, "POST", "/m/alerts/3/ack", True),
        (Role.CREW, "POST", "/api/silences", False),
        (Role.OPERATOR, "POST", "/api/silences", True),
        (Role.OPERATOR, "POST", "/api/rules/validate", True),
        (Role.OPERATOR, "POST", "/api/rules/toilet-call/disable", False),
        (Role.ADMIN, "POST", "/api/rules/toilet-call/disable", True),
    ],
)
def test_each_role_may_change_only_its_share(
    role: Role, method: str, path: str, allowed: bool
) -> None:
    """Viewers only read, crews handle alerts, operators run the hall, admins change rules."""
    assert role_allows(role, method, path) is allowed


async def test_a_new_password_or_removal_ends_open_sessions(hub: HubService) -> None:
    """Changing a user's password (as `hallhub users passwd` does) or removing the user
    signs their open browser sessions out at once."""
    users = UserStore.in_state_dir(hub.config.hub.state_dir)
    async with (
        httpx.AsyncClient(base_url=hub.console_url) as eve,
        httpx.AsyncClient(base_url=hub.console_url) as ops,
    ):
        await sign_in(eve, "eve")
        await sign_in(ops, "ops")
        before = [(await client.get("/api/devices")).status_code for client in (eve, ops)]
        users.set_password("eve", "a-new-password-77")
        users.remove("ops")
        after = [(await client.get("/api/devices")).status_code for client in (eve, ops)]
    assert before == [200, 200]
    assert after == [401, 401]


async def test_cross_site_posts_are_refused_and_crews_use_the_phone_page(
    hub: HubService,
) -> None:
    """A sign-in or change whose Origin is another site is refused; a crew member signed
    in with their own account acknowledges through the phone page's own form."""
    UserStore.in_state_dir(hub.config.hub.state_dir).add("wang", "crew", PASSWORD)
    alert = await hub.alerts.raise_condition("pad-1", "stuck", "normal", "it", "Pad stuck", None)
    evil = {"Origin": "http://evil.example"}
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        forged_sign_in = await http.post(
            "/login", data={"user": "wang", "password": PASSWORD}, headers=evil
        )
        csrf = await sign_in(http, "wang")
        forged_change = await http.post(
            f"/api/alerts/{alert['alert_id']}/acknowledge",
            headers={**evil, "X-CSRF-Token": csrf},
        )
        page = (await http.get("/m/alerts")).text
        action = page.split("action='")[1].split("'")[0]
        acknowledged = await http.post(action, data={"name": "wang"})

    assert forged_sign_in.status_code == 403 and forged_change.status_code == 403
    assert f"/{alert['alert_id']}/ack?" in action
    assert acknowledged.status_code == 303
    with hub.journal.reading() as conn:
        (state,) = conn.execute(
            "SELECT state FROM alerts WHERE alert_id = ?", (alert["alert_id"],)
        ).fetchone()
    assert state == "acknowledged"


async def test_live_stream_announces_alert_changes_no_device_event_carries(
    hub: HubService,
) -> None:
    """An alert raised by the hub itself (no device event) reaches open pages too."""
    with hub.journal.reading() as conn:
        (before,) = conn.execute("SELECT COUNT(*) FROM alerts WHERE state = 'open'").fetchone()
    async with httpx.AsyncClient(base_url=hub.console_url, timeout=10) as http:
        await sign_in(http, "eve")
        async with http.stream("GET", "/api/events/stream") as stream:
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            await hub.alerts.raise_condition("pad-1", "stuck", "normal", "it", "stuck", None)
            async for line in lines:
                if line == "event: alerts":
                    states = json.loads((await anext(lines))[5:])["states"]
                    if states.get("open", 0) == before + 1:
                        break
    assert states["open"] == before + 1
