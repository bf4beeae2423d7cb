"""Routing alerts to teams by device kind, floor or zone, and severity."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hub.alerts import AlertsSection, DevicePlace
from hub.alerts.routing import Router
from hub.config import HubConfig
from hub.errors import ConfigError
from hub.yamlfile import load_model
from tests.alerts.kit import alert_service

ROUTES = [
    {"kind": "printer", "severity": "urgent", "team": "duty_desk"},
    {"kind": "printer", "floor": 2, "team": "maint_f2"},
    {"zone": "f1-lobby", "team": "lobby"},
]


def test_first_matching_route_wins_and_rule_team_is_the_fallback() -> None:
    """Kind+severity beats kind+floor beats zone; nothing matching keeps the rule's team."""
    router = Router(AlertsSection.model_validate({"routes": ROUTES}).routes)
    printer_f2 = DevicePlace("printer", "f2-windows", 2)

    assert router.team_for(printer_f2, "urgent", "rule") == "duty_desk"
    assert router.team_for(printer_f2, "high", "rule") == "maint_f2"
    assert router.team_for(DevicePlace("kiosk", "f1-lobby", 1), "low", "rule") == "lobby"
    assert router.team_for(DevicePlace("printer", "f3", 3), "high", "rule") == "rule"


async def test_alert_goes_to_the_routed_team(tmp_path: Path) -> None:
    """An alert on a floor-2 printer pages the floor-2 crew, not the rule's team."""
    async with alert_service(tmp_path / "j.sqlite3", {"routes": ROUTES}) as (alerts, _c, pages, _j):
        alert = await alerts.raise_condition("printer-1", "paper_out", "high", "it", "p", None)

    assert alert["team"] == "maint_f2"
    assert pages.events() == [("maint_f2", "opened")]


def test_a_bad_alerts_section_names_the_field(tmp_path: Path) -> None:
    """A route without a team, or a bad time, is refused with the file and field named."""
    path = tmp_path / "hall.yaml"
    path.write_text(
        "hub: {id: h}\nalerts:\n  routes:\n    - kind: printer\n  closed_hours: {opens: '25:00'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_model(path, HubConfig)

    message = str(caught.value)
    assert "hall.yaml" in message and "team" in message and "opens" in message


def test_the_readme_alerts_example_is_valid() -> None:
    """The ``alerts:`` example in the README loads as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\nalerts:", 1)[1].split("```", 1)[0]
    section = AlertsSection.model_validate(yaml.safe_load("alerts:" + block)["alerts"])

    assert section.routes[0].team == "duty_desk"
    assert section.handsets["hs-desk-1"] == "duty_desk"
