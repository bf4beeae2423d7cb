"""``hallhub ratings``: verify the chain, today's ratings, tasks, unrated cases.

The command reads the hub's journal file through a read-only connection, so it
works whether or not the hub runs, and never writes: the hub stays the only writer.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from hub.ratings.errors import RatingError

ACTIONS = {
    "verify": "check the rating hash chain; name every edited, deleted or moved rating",
    "today": "today's ratings per level, the bad ones and their tasks",
    "tasks": "follow-up tasks for bad ratings, with due dates and overdue steps",
    "unrated": "cases still unrated after ratings.follow_up_after_days",
}


def add_parser(commands: Any) -> None:
    """Add ``ratings`` and its actions to the top-level parser."""
    ratings = commands.add_parser("ratings", help="好差评 ratings: verify, today, tasks, unrated")
    actions = ratings.add_subparsers(dest="ratings_command", required=True, metavar="ACTION")
    for name, help_text in ACTIONS.items():
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--config", type=Path, required=True, metavar="FILE")
        action.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Carry out one ``hallhub ratings`` action; exit 1 when verify finds a break."""
    from hub.calendar import HallCalendar, load_calendar_settings
    from hub.config import load_config
    from hub.journal import connect
    from hub.ratings import views

    config = load_config(args.config)
    path = config.hub.state_dir / "journal.sqlite3"
    if not path.exists():
        raise RatingError(f"no journal at {path}: has the hub run with this configuration?")
    calendar = HallCalendar(
        load_calendar_settings(config.calendar_file) if config.calendar_file else None
    )
    now = time.time()
    conn = connect(path, writer=False)
    try:
        if args.ratings_command == "verify":
            result = views.verify(conn, config.hub.id)
        elif args.ratings_command == "today":
            result = views.today(conn, calendar, now)
        elif args.ratings_command == "tasks":
            result = views.task_list(conn, calendar, now)
        else:
            result = views.unrated(conn, config.ratings, now)
    except sqlite3.OperationalError as exc:
        raise RatingError(f"cannot read ratings from {path}: {exc}") from exc
    finally:
        conn.close()
    sys.stdout.write(_render(args.ratings_command, result, args.json) + "\n")
    return 1 if args.ratings_command == "verify" and not result["ok"] else 0


def _render(action: str, result: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(result, ensure_ascii=False, indent=2)
    if action == "verify":
        head = f"{result['ratings']} ratings, {result['algorithm']} chain: "
        if result["ok"]:
            return head + "intact"
        lines = [
            f"  rating {b['rating_id']}: {b['problem']}: {b['detail']}" for b in result["breaks"]
        ]
        return head + f"{len(result['breaks'])} break(s)\n" + "\n".join(lines)
    if action == "today":
        levels = "  ".join(f"{level} {count}" for level, count in result["levels"].items())
        bad = [
            f"  rating {b['rating_id']} {b['level']} window {b['window']} task {b['task_id']}"
            f" contact by {b['contact_due']} fix by {b['fix_due']}"
            for b in result["bad"]
        ]
        return "\n".join([f"{result['date']}: {levels}  unrated {result['unrated']}", *bad])
    if action == "tasks":
        rows = [
            f"{t['task_id']:>5}  {t['state']:<10} {t['level']:<6} window {t['window']:<6}"
            f" contact by {t['contact_due']}  fix by {t['fix_due']}"
            f"{'  OVERDUE ' + ','.join(t['overdue_steps']) if t['overdue'] else ''}"
            for t in result["tasks"]
        ]
        return "\n".join(rows) or "no follow-up tasks"
    rows = [
        f"{c['case_key']}  window {c['window']}  unrated {c['days_unrated']} days"
        for c in result["cases"]
    ]
    return "\n".join(rows) or f"no case unrated for {result['after_days']} days or more"
