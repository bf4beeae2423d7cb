"""Reconciling three independent counts of the same events by event id.

What the simulated devices say the broker acknowledged, what the hub's journal
holds, and what the city receiver stored are counted separately and compared. Any
id missing from a later stage, or present twice in one, is listed by name.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SAMPLE = 20


def published_ids(log_path: Path) -> list[str]:
    """Event ids from a simulator publication log (one JSON object per line)."""
    if not log_path.exists():
        return []
    ids = []
    with log_path.open(encoding="utf-8") as log:
        for line in log:
            if line.strip():
                ids.append(json.loads(line)["event_id"])
    return ids


def stored_ids(db_path: Path, query: str, *params: Any) -> list[str]:
    """Event ids returned by `query` on an SQLite file, opened read-only."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute(query, params)]
    finally:
        conn.close()


def reconcile(
    published: Iterable[str], journal: Iterable[str], receiver: Iterable[str]
) -> dict[str, Any]:
    """Compare the three counts; `ok` is true when nothing is missing or doubled."""
    counts = {
        "published": Counter(published),
        "journal": Counter(journal),
        "receiver": Counter(receiver),
    }
    missing_in_journal = sorted(set(counts["published"]) - set(counts["journal"]))
    missing_at_receiver = sorted(set(counts["journal"]) - set(counts["receiver"]))
    unknown_at_receiver = sorted(set(counts["receiver"]) - set(counts["journal"]))

    report: dict[str, Any] = {name: _tally(counter) for name, counter in counts.items()}
    report["journal"]["missing"] = _sample(missing_in_journal)
    report["receiver"]["missing"] = _sample(missing_at_receiver)
    report["receiver"]["not_in_journal"] = _sample(unknown_at_receiver)
    report["ok"] = not (
        missing_in_journal
        or missing_at_receiver
        or unknown_at_receiver
        or any(report[name]["duplicated"]["count"] for name in counts)
    )
    return report


def _tally(counter: Counter[str]) -> dict[str, Any]:
    doubled = sorted(event_id for event_id, seen in counter.items() if seen > 1)
    return {
        "events": sum(counter.values()),
        "unique": len(counter),
        "duplicated": _sample(doubled),
    }


def _sample(ids: list[str]) -> dict[str, Any]:
    return {"count": len(ids), "ids": ids[:SAMPLE]}
