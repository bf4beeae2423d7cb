"""``hallhub alerts`` works against the running hub's API, with its token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hub.cli import main
from hub.service import HubService


async def _hallhub(hub: HubService, *argv: str) -> int:
    token_file = hub.config.hub.state_dir / "api-token"
    common = ["alerts", "--url", hub.console_url, "--token-file", str(token_file)]
    return await asyncio.to_thread(main, [*common, *argv])


async def test_list_ack_resolve_and_silence_from_the_command_line(
    hub: HubService, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crew lead lists alerts, acknowledges, resolves and silences from a shell."""
    alert = await hub.alerts.raise_condition("pad-1", "stuck", "normal", "it", "Pad stuck", None)
    alert_id = str(alert["alert_id"])

    assert await _hallhub(hub, "list") == 0
    listed = capsys.readouterr().out
    assert await _hallhub(hub, "ack", alert_id, "--by", "wang") == 0
    assert await _hallhub(hub, "resolve", alert_id, "--by", "wang") == 0
    acted = capsys.readouterr().out
    assert await _hallhub(hub, "silence", "zone", "f1-windows", "--for", "600") == 0
    silenced = capsys.readouterr().out

    assert "Pad stuck" in listed and "open" in listed
    assert f"alert {alert_id} is acknowledged" in acted
    assert f"alert {alert_id} is resolved" in acted
    assert "silence 1 on zone f1-windows" in silenced


async def test_refusals_and_a_wrong_token_are_clear_errors(
    hub: HubService, capsys: pytest.CaptureFixture[str]
) -> None:
    """A latched call cannot be resolved from the CLI; exit 2 with the hub's reason."""
    call = await hub.alerts.raise_condition(
        "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
    )

    code = await _hallhub(hub, "resolve", str(call["alert_id"]))
    refused = capsys.readouterr().err
    missing = await asyncio.to_thread(main, ["alerts", "--url", hub.console_url, "list"])
    no_token = capsys.readouterr().err

    assert code == 2 and "409" in refused and "reset at the device" in refused
    assert missing == 2 and "--token-file" in no_token


async def test_config_file_gives_the_url_and_the_token(
    hub: HubService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With --config, the CLI finds the console and the token file as the hub does."""
    config = tmp_path / "hallhub.yaml"
    config.write_text(
        f"hub: {{id: hall-test, state_dir: {hub.config.hub.state_dir}}}\n"
        f"console: {{host: 127.0.0.1, port: {hub.console_port}}}\n",
        encoding="utf-8",
    )
    await hub.alerts.raise_condition("pad-1", "stuck", "normal", "it", "Pad stuck", None)

    code = await asyncio.to_thread(main, ["alerts", "--config", str(config), "list", "--all"])

    assert code == 0 and "Pad stuck" in capsys.readouterr().out
