"""Silences: maintenance windows per device, zone or kind that expire on their own."""

from __future__ import annotations

import sqlite3
from typing import Any

from hub.alerts.errors import SilenceError
from hub.alerts.routing import DevicePlace

SCOPES = ("device", "zone", "kind")
MAX_DURATION = 7 * 24 * 3600.0


def add_silence(
    conn: sqlite3.Connection,
    scope: str,
    value: str,
    duration: float,
    reason: str,
    by: str,
    now: float,
) -> dict[str, Any]:
    """Store a silence from `now` for `duration` seconds."""
    if scope not in SCOPES:
        raise SilenceError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not value:
        raise SilenceError("a silence needs the device id, zone or kind it covers")
    if not 0 < duration <= MAX_DURATION:
        raise SilenceError(f"duration must be between 0 and {MAX_DURATION:.0f} seconds")
    cursor = conn.execute(
        "INSERT INTO alert_silences (scope, value, reason, created_by, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (scope, value, reason, by, now, now + duration),
    )
    return silence_by_id(conn, int(cursor.lastrowid or 0))


def end_silence(conn: sqlite3.Connection, silence_id: int, now: float) -> dict[str, Any]:
    """End a silence before it expires."""
    cursor = conn.execute(
        "UPDATE alert_silences SET ended_at = ? WHERE silence_id = ? AND ended_at IS NULL",
        (now, silence_id),
    )
    if cursor.rowcount == 0:
        raise SilenceError(f"no running silence {silence_id}")
    return silence_by_id(conn, silence_id)


def silence_by_id(conn: sqlite3.Connection, silence_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM alert_silences WHERE silence_id = ?", (silence_id,))
    return dict(row.fetchone())


def active_silences(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM alert_silences WHERE ended_at IS NULL AND expires_at > ?"
        " ORDER BY expires_at",
        (now,),
    )
    return [dict(row) for row in rows]


def covering_silence(
    conn: sqlite3.Connection, device_id: str, place: DevicePlace, now: float
) -> int | None:
    """The id of a running silence covering this device, if any."""
    row = conn.execute(
        "SELECT silence_id FROM alert_silences WHERE ended_at IS NULL AND expires_at > ?"
        " AND ((scope = 'device' AND value = ?) OR (scope = 'zone' AND value = ?)"
        " OR (scope = 'kind' AND value = ?)) ORDER BY expires_at DESC LIMIT 1",
        (now, device_id, place.zone, place.kind),
    ).fetchone()
    return None if row is None else int(row[0])
