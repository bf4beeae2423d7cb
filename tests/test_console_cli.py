"""The console's CLI mirror: users, rules and alerts from a shell, tables or JSON."""

from __future__ import annotations

import asyncio
import getpass
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.broker import ManagedBroker
from hub.cli import main
from hub.cli_output import Progress, render_table
from hub.service import HubService
from hub.users import UserStore
from tests.hubkit import running_hub

DEVICES = [{"id": "pad-1", "model": "rating-pad-rp5", "zone": "f1-windows", "window": "W1"}]


@pytest.fixture
async def hub(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[HubService]:
    async with running_hub(broker.port, tmp_path / "hub", unique_topic_root, DEVICES) as service:
        yield service


def _config_file(tmp_path: Path, state_dir: Path, port: int = 8080) -> Path:
    config = tmp_path / "hallhub.yaml"
    config.write_text(
        f"hub: {{id: hall-test, state_dir: {state_dir}}}\n"
        f"console: {{host: 127.0.0.1, port: {port}}}\n",
        encoding="utf-8",
    )
    return config


def test_users_are_managed_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hallhub users` adds (password from stdin), lists as JSON, changes a password and
    removes a user, and refuses to remove the last admin with exit 2. Each change is in
    the audit trail under the shell user's name, without the password."""
    config = str(_config_file(tmp_path, tmp_path / "state"))

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(["users", "--config", config, *argv])

    assert run("add", "chief", "--role", "admin", stdin="first-password-1\n") == 0
    assert run("add", "wang", "--role", "crew", stdin="crew-password-22\n") == 0
    assert run("passwd", "wang", stdin="crew-password-33\n") == 0
    capsys.readouterr()
    assert run("list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert run("remove", "wang") == 0
    assert run("remove", "chief") == 2
    refused = capsys.readouterr().err

    users = UserStore.in_state_dir(tmp_path / "state")
    assert listed == {
        "users": [{"name": "chief", "role": "admin"}, {"name": "wang", "role": "crew"}]
    }
    assert [user.name for user in users.all()] == ["chief"]
    assert "last admin" in refused
    assert "password" not in json.dumps(listed)
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as conn:
        trail = conn.execute("SELECT actor, action, target, detail FROM audit_trail").fetchall()
    assert [(action, target) for _, action, target, _ in trail] == [
        ("user.add", "chief"),
        ("user.add", "wang"),
        ("user.passwd", "wang"),
        ("user.remove", "wang"),
    ]
    assert {actor for actor, *_ in trail} == {f"cli:{getpass.getuser()}"}
    assert "password" not in json.dumps(trail)


async def test_rules_and_alerts_mirror_the_console(
    hub: HubService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hallhub rules list/disable` and `alerts list --json` show what the console shows;
    `rules preview` prints a per-rule table and its progress on stderr; the switch is
    audited under the API token."""
    config = str(_config_file(tmp_path, hub.config.hub.state_dir, hub.console_port or 0))
    await hub.alerts.raise_condition("pad-1", "stuck", "normal", "it", "Pad stuck", None)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("rules: []\n", encoding="utf-8")

    def hallhub(*argv: str) -> int:
        return main([*argv[:2], "--config", config, *argv[2:]])

    assert await asyncio.to_thread(hallhub, "rules", "list") == 0
    table = capsys.readouterr().out
    first_rule = table.splitlines()[2].split()[0]
    assert await asyncio.to_thread(hallhub, "rules", "disable", first_rule, "--json") == 0
    switched = json.loads(capsys.readouterr().out)
    assert await asyncio.to_thread(main, ["alerts", "--config", config, "list", "--json"]) == 0
    alerts = json.loads(capsys.readouterr().out)["alerts"]
    preview = ["rules", "preview", str(candidate), "--config", config]
    code = await asyncio.to_thread(main, [*preview, "--from", "2026-01-01", "--to", "2026-12-31"])
    previewed = capsys.readouterr()

    assert table.splitlines()[0].split() == ["id", "enabled", "description"]
    assert switched == {"rule": first_rule, "enabled": False}
    assert any(a["message"] == "Pad stuck" for a in alerts)
    assert code == 0 and "events replayed" in previewed.out and "replaying" in previewed.err
    assert any(e.actor == "api-token" and first_rule in e.target for e in hub.audit.entries())


async def test_sync_drain_ends_at_once_when_nothing_waits(
    hub: HubService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing for the city, `hallhub sync drain` shows a full bar and exits 0."""
    config = str(_config_file(tmp_path, hub.config.hub.state_dir, hub.console_port or 0))

    code = await asyncio.to_thread(main, ["sync", "drain", "--config", config])

    assert code == 0 and "0/0 events acknowledged" in capsys.readouterr().err


def test_tables_line_up_chinese_text_and_progress_counts() -> None:
    """Columns stay aligned when cells hold wide (Chinese) characters; the progress bar
    fills in proportion and never passes its total."""
    table = render_table(
        [{"zone": "一楼大厅", "waiting": 12}, {"zone": "f2", "waiting": None}],
        ["zone", "waiting"],
    )
    stream = io.StringIO()
    bar = Progress(10, "events", stream=stream, width=10)
    bar.update(5)
    bar.update(50)

    lines = table.splitlines()
    assert lines[2].startswith("一楼大厅  12") and lines[3].startswith("f2        -")
    assert "[#####.....] 5/10" in stream.getvalue()
    assert "[##########] 10/10" in stream.getvalue()
