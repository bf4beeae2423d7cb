"""The README's rule and calendar examples are valid files, so users can copy them."""

from __future__ import annotations

from pathlib import Path

from hub.calendar import load_calendar_settings
from rules.layers import load_layers

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _yaml_after(heading: str) -> str:
    return README.split(heading)[1].split("```yaml")[1].split("```")[0]


def test_readme_rule_example_loads(tmp_path: Path) -> None:
    """The 'Writing a rule' example validates and uses every action kind."""
    path = tmp_path / "example.yaml"
    path.write_text(_yaml_after("#### Writing a rule"), encoding="utf-8")
    rule = load_layers([("hall", path)]).rules[0]
    kinds = {name for action in rule.then for name, value in action if value is not None}
    assert kinds == {"raise_", "command", "publish", "set_zone_state", "emit"}


def test_readme_calendar_example_loads(tmp_path: Path) -> None:
    """The hall calendar example validates, with next year's table."""
    path = tmp_path / "calendar.yaml"
    path.write_text(_yaml_after("### Hall calendar"), encoding="utf-8")
    assert 2027 in load_calendar_settings(path).years
