"""Rules switched on or off from the console, kept as the top rule layer.

Hall IT's switches live in ``<state dir>/console-rules/switches.yaml`` as plain
``overrides:`` of ``enabled``, so they read like any other layer, show up as the
source of the ``enabled`` setting, and survive a restart.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from hub.privatefile import write_private
from rules.layers import CONSOLE_RULES_DIR

logger = logging.getLogger(__name__)

SWITCHES_FILE = "switches.yaml"


def switches_folder(state_dir: Path) -> Path:
    """The console's rule layer folder."""
    return state_dir / CONSOLE_RULES_DIR


def set_enabled(state_dir: Path, rule_id: str, enabled: bool) -> None:
    """Switch one rule on or off, keeping the other switches."""
    path = switches_folder(state_dir) / SWITCHES_FILE
    document: dict[str, Any] = {}
    if path.exists():
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    overrides = document.setdefault("overrides", {})
    overrides[rule_id] = {"enabled": enabled}
    write_private(path, yaml.safe_dump(document, sort_keys=True))
    logger.info("rule %s switched %s from the console", rule_id, "on" if enabled else "off")
