"""The live queue view and waiting and service times, read from the journal file.

Waiting time runs from issue to the first call; service time from a call to the
end of that ticket's turn at the window (served, skipped or transferred).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from hub.tickets.settings import TicketsSection
from hub.tickets.store import WAITING, stored_day


def queue_view(conn: sqlite3.Connection, settings: TicketsSection) -> dict[str, Any]:
    """Who waits in each category, each window's state, and today's ticket count.

    Exactly the shape the console page is built against; the day is in the statistics.
    """
    day = stored_day(conn) or ""
    waiting = dict(
        conn.execute(
            "SELECT queue_category, COUNT(*) FROM tickets WHERE service_day = ? AND state = ?"
            " GROUP BY queue_category",
            (day, WAITING),
        ).fetchall()
    )
    waits = dict(
        conn.execute(
            "SELECT queue_category, AVG(first_called_at - issued_at) FROM tickets"
            " WHERE service_day = ? AND first_called_at IS NOT NULL GROUP BY queue_category",
            (day,),
        ).fetchall()
    )
    issued = conn.execute("SELECT COUNT(*) FROM tickets WHERE service_day = ?", (day,))
    return {
        "categories": [
            {
                "category": letter,
                "name": category.name,
                "waiting": int(waiting.get(letter, 0)),
                "average_wait_s": round(float(waits.get(letter) or 0.0), 1),
            }
            for letter, category in settings.categories.items()
        ],
        "windows": _windows(conn, settings),
        "tickets_issued_today": int(issued.fetchone()[0]),
    }


def _windows(conn: sqlite3.Connection, settings: TicketsSection) -> list[dict[str, Any]]:
    rows = {
        row["window"]: row
        for row in conn.execute(
            "SELECT w.window, w.state, t.label FROM queue_windows w"
            " LEFT JOIN tickets t ON t.ticket_id = w.serving"
        )
    }
    return [
        {
            "window": name,
            "state": rows[name]["state"] if name in rows else "closed",
            "serving": rows[name]["label"] if name in rows else None,
            "categories": list(window.categories),
        }
        for name, window in settings.windows.items()
    ]


def queue_stats(conn: sqlite3.Connection, local_hour: Callable[[float], int]) -> dict[str, Any]:
    """Average and longest waiting and service times per category, window and hour."""
    day = stored_day(conn) or ""
    waits = conn.execute(
        "SELECT category, window, issued_at, first_called_at - issued_at FROM tickets"
        " WHERE service_day = ? AND first_called_at IS NOT NULL",
        (day,),
    ).fetchall()
    services = conn.execute(
        "SELECT s.category, s.window, s.called_at, s.finished_at - s.called_at"
        " FROM ticket_services s JOIN tickets t ON t.ticket_id = s.ticket_id"
        " WHERE t.service_day = ?",
        (day,),
    ).fetchall()
    return {
        "service_day": day or None,
        "waiting": _grouped(waits, local_hour),
        "service": _grouped(services, local_hour),
    }


def _grouped(
    rows: Iterable[sqlite3.Row], local_hour: Callable[[float], int]
) -> dict[str, dict[str, dict[str, float]]]:
    groups: dict[str, dict[str, list[float]]] = {
        "by_category": defaultdict(list),
        "by_window": defaultdict(list),
        "by_hour": defaultdict(list),
    }
    for category, window, at, seconds in rows:
        groups["by_category"][category].append(seconds)
        groups["by_window"][window or "-"].append(seconds)
        groups["by_hour"][f"{local_hour(at):02d}"].append(seconds)
    return {
        name: {key: _summary(values) for key, values in sorted(group.items())}
        for name, group in groups.items()
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "average_s": round(sum(values) / len(values), 1),
        "longest_s": round(max(values), 1),
    }


def hour_in(zone: dt.tzinfo) -> Callable[[float], int]:
    """The hall-local hour of a Unix time."""
    return lambda wall: dt.datetime.fromtimestamp(wall, zone).hour
