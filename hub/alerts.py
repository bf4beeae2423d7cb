"""Alerts for the hall's people: opened by conditions, acknowledged, resolved.

A condition raised by a rule on a device opens one alert; raising it again while
the alert is still active only counts it, so a repeating device makes one alert, not
a flood. Clearing the condition resolves the alert. Every change is written to the
journal and announced on the team's MQTT topic for handhelds:
``<crew topic root>/<hub id>/crews/<team>/alerts``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from hub import metrics
from hub.clock import Clock
from hub.errors import HallhubError
from hub.journal import Journal

logger = logging.getLogger(__name__)

Announce = Callable[[str, dict[str, Any]], None]

ACTIVE_STATES = ("open", "acknowledged")


class AlertNotFoundError(HallhubError):
    """No alert with that id, or it is not in a state that allows the change."""


class AlertService:
    """Opens, counts, acknowledges and resolves alerts."""

    def __init__(self, journal: Journal, clock: Clock, announce: Announce) -> None:
        self._journal = journal
        self._clock = clock
        self._announce = announce

    async def raise_condition(
        self,
        device_id: str,
        condition: str,
        severity: str,
        team: str,
        message: str,
        event_id: str | None,
    ) -> dict[str, Any]:
        """Open an alert for `condition` on `device_id`, or count it again."""
        now = self._clock.wall()
        key = f"{device_id}/{condition}"

        def upsert(conn: sqlite3.Connection) -> tuple[dict[str, Any], bool]:
            active = _active(conn, key)
            if active is not None:
                conn.execute(
                    "UPDATE alerts SET count = count + 1 WHERE alert_id = ?", (active["alert_id"],)
                )
                return _by_id(conn, active["alert_id"]), False
            cursor = conn.execute(
                "INSERT INTO alerts (alert_key, device_id, condition, severity, team, state,"
                " message, opened_at, opened_by_event) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (key, device_id, condition, severity, team, message, now, event_id),
            )
            return _by_id(conn, int(cursor.lastrowid or 0)), True

        alert, opened = await self._journal.write(upsert)
        if opened:
            logger.warning("alert %d opened: %s", alert["alert_id"], message)
            self._announce(team, {"event": "opened", **alert})
        await self.refresh_metrics()
        return alert

    async def clear_condition(
        self, device_id: str, condition: str, by: str = "condition cleared"
    ) -> dict[str, Any] | None:
        """Resolve the active alert for `condition` on `device_id`, if there is one."""
        now = self._clock.wall()
        key = f"{device_id}/{condition}"

        def resolve(conn: sqlite3.Connection) -> dict[str, Any] | None:
            active = _active(conn, key)
            if active is None:
                return None
            conn.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ?"
                " WHERE alert_id = ?",
                (now, by, active["alert_id"]),
            )
            return _by_id(conn, active["alert_id"])

        alert = await self._journal.write(resolve)
        if alert is not None:
            logger.info("alert %d resolved: %s", alert["alert_id"], by)
            self._announce(alert["team"], {"event": "resolved", **alert})
            await self.refresh_metrics()
        return alert

    async def acknowledge(self, alert_id: int, by: str) -> dict[str, Any]:
        """Record that `by` has taken the alert on."""
        now = self._clock.wall()

        def ack(conn: sqlite3.Connection) -> dict[str, Any]:
            cursor = conn.execute(
                "UPDATE alerts SET state = 'acknowledged', acknowledged_at = ?,"
                " acknowledged_by = ? WHERE alert_id = ? AND state = 'open'",
                (now, by, alert_id),
            )
            if cursor.rowcount == 0:
                raise AlertNotFoundError(f"no open alert {alert_id}")
            return _by_id(conn, alert_id)

        alert = await self._journal.write(ack)
        logger.info("alert %d acknowledged by %s", alert_id, by)
        self._announce(alert["team"], {"event": "acknowledged", **alert})
        await self.refresh_metrics()
        return alert

    async def refresh_metrics(self) -> None:
        with self._journal.reading() as conn:
            counts = dict(conn.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state"))
        for state in ("open", "acknowledged", "resolved"):
            metrics.ALERTS.labels(state).set(counts.get(state, 0))


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


def encode_notice(notice: dict[str, Any]) -> bytes:
    return json.dumps(notice, ensure_ascii=False, sort_keys=True).encode()


def _active(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    placeholders = ", ".join("?" for _ in ACTIVE_STATES)
    row: sqlite3.Row | None = conn.execute(
        f"SELECT * FROM alerts WHERE alert_key = ? AND state IN ({placeholders})",
        (key, *ACTIVE_STATES),
    ).fetchone()
    return row


def _by_id(conn: sqlite3.Connection, alert_id: int) -> dict[str, Any]:
    return dict(conn.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone())
