"""Reading alerts from the journal: one row as a dict, lists, counts, notices."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

ACTIVE_STATES = ("open", "acknowledged", "suppressed")
STATES = ("open", "acknowledged", "suppressed", "resolved")


def active_alert(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """The alert still active for a device and condition, if there is one."""
    placeholders = ", ".join("?" for _ in ACTIVE_STATES)
    row = conn.execute(
        f"SELECT * FROM alerts WHERE alert_key = ? AND state IN ({placeholders})",
        (key, *ACTIVE_STATES),
    ).fetchone()
    return None if row is None else dict(row)


def alert_by_id(conn: sqlite3.Connection, alert_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
    return None if row is None else dict(row)


def list_alerts(conn: sqlite3.Connection, active_only: bool = False) -> list[dict[str, Any]]:
    """Alerts, active ones first, newest first."""
    where = "WHERE state != 'resolved'" if active_only else ""
    rows = conn.execute(
        f"SELECT * FROM alerts {where} ORDER BY state = 'resolved', opened_at DESC LIMIT 500"
    )
    return [dict(row) for row in rows]


def alert_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many alerts were ever opened, and how many are resolved."""
    opened, resolved = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(state = 'resolved'), 0) FROM alerts"
    ).fetchone()
    return {"opened": opened, "closed": resolved}


def list_deliveries(conn: sqlite3.Connection, alert_id: int | None = None) -> list[dict[str, Any]]:
    """Recorded delivery outcomes, newest first."""
    if alert_id is None:
        rows = conn.execute("SELECT * FROM alert_deliveries ORDER BY delivery_id DESC LIMIT 500")
    else:
        rows = conn.execute(
            "SELECT * FROM alert_deliveries WHERE alert_id = ? ORDER BY delivery_id", (alert_id,)
        )
    return [dict(row) for row in rows]


def encode_notice(notice: dict[str, Any]) -> bytes:
    return json.dumps(notice, ensure_ascii=False, sort_keys=True).encode()
