"""A hall of ticket printers only, and the command that runs its hub under a supervisor.

Shared by the ticket crash test and the restart benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

CATEGORIES = ("A", "B", "C")


def printer_names(count: int) -> list[str]:
    return [f"printer-{n:02d}" for n in range(1, count + 1)]


def write_hall(folder: Path, broker_port: int, printers: list[str]) -> Path:
    """A hall configuration with `printers` and three categories, in `folder`."""
    config: dict[str, Any] = {
        "hub": {"id": "hall-rush", "state_dir": "state", "clock_sync": "assume"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "topic_root": "hall"},
        "console": {"host": "127.0.0.1", "port": 0},
        "devices": [{"id": name, "model": "ticket-printer-tp80"} for name in printers],
        "tickets": {
            "categories": {letter: {"name": f"service {letter}"} for letter in CATEGORIES},
            "windows": {"W01": {"categories": list(CATEGORIES)}},
        },
    }
    path = folder / "hallhub.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def hub_command(config: Path) -> list[str]:
    """``hallhub run`` for `config`, quiet but for warnings."""
    return [
        sys.executable,
        "-m",
        "hub.cli",
        "--log-level",
        "WARNING",
        "run",
        "--config",
        str(config),
    ]
