"""The publication log: what simulated devices know the broker accepted.

One JSON line per message the broker acknowledged (PUBACK for QoS 1):

    {"event_id": "...", "device_id": "...", "message": "ticket", "at": 1767225600.0}

Tests and demos compare it with the hub's journal: every line must be journaled
exactly once. A message that was sent but never acknowledged is not written, since
the broker may never have had it.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)


class PublicationLog:
    """An append-only JSONL file, safe to write from paho's network threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO | None = None

    def record(self, event_id: str, device_id: str, message: str, at: float) -> None:
        """Append one acknowledged message and flush it to the file."""
        line = json.dumps(
            {"event_id": event_id, "device_id": device_id, "message": message, "at": at},
            ensure_ascii=False,
        )
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file; a later `record` opens it again."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_publication_log(path: Path) -> list[dict[str, Any]]:
    """Every entry of a publication log, oldest first (empty if there is no file)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
