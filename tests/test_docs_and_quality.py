"""The README documents every command and route, and the code passes its own checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from starlette.routing import Route

from hub.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_cli_command_is_documented() -> None:
    """Each `hallhub` subcommand appears in the README's command table."""
    commands = next(action for action in _parser()._actions if action.dest == "command").choices
    assert commands
    for name in commands:
        assert f"`hallhub {name}" in README, f"hallhub {name} is not in the README"


def test_every_console_route_is_documented() -> None:
    """Each console route appears in the README's route table."""
    from hub.console import create_app

    class _Stub:
        token = "t" * 40

    app = create_app(_Stub())  # type: ignore[arg-type]
    routes = [route for route in app.routes if isinstance(route, Route)]
    assert len(routes) >= 7
    for route in routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        assert f" {path}`" in README, f"{path} is not in the README"


def test_ruff_lint_and_format_are_clean() -> None:
    """The code is linted and formatted as configured in pyproject.toml."""
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout[-3000:]
    form = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert form.returncode == 0, form.stdout[-3000:]


def test_mypy_strict_is_clean() -> None:
    """The packages type-check under mypy --strict (configured in pyproject.toml)."""
    checked = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout[-3000:]
