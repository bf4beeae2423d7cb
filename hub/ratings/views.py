"""What the API and ``hallhub ratings`` show: today's ratings, tasks, unrated cases, verify.

Each view reads the journal through a read-only connection and returns plain JSON,
so the console, the CLI and the tests see the same shapes.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from hub.calendar import HallCalendar
from hub.ratings import store
from hub.ratings.chain import find_breaks
from hub.ratings.desk import RECORDED_TYPE
from hub.ratings.digests import digest_named
from hub.ratings.levels import BAD_LEVELS, LEVELS
from hub.ratings.settings import RatingsSection
from hub.ratings.tasks import overdue_stages

DAY_SECONDS = 86_400.0
TASK_FIELDS = ("task_id", "rating_id", "window", "level", "state", "contact_due", "fix_due")


def day_bounds(calendar: HallCalendar, now: float) -> tuple[dt.date, float, float]:
    """The hall-local date at `now` and its start and end as Unix times."""
    day = calendar.at_wall(now).date()
    start = dt.datetime.combine(day, dt.time(), tzinfo=calendar.zone)
    return day, start.timestamp(), (start + dt.timedelta(days=1)).timestamp()


def today(conn: sqlite3.Connection, calendar: HallCalendar, now: float) -> dict[str, Any]:
    """Today's ratings per level, the bad ones with their tasks, and the unrated count."""
    day, start, end = day_bounds(calendar, now)
    ratings = store.ratings_between(conn, start, end)
    levels = {level: 0 for level in LEVELS}
    for rating in ratings:
        levels[rating["level"]] += 1
    bad = [rating for rating in ratings if rating["level"] in BAD_LEVELS]
    tasks = store.task_of_ratings(conn, [rating["rating_id"] for rating in bad])
    return {
        "date": day.isoformat(),
        "levels": levels,
        "bad": [_bad_rating(rating, tasks.get(rating["rating_id"])) for rating in bad],
        "unrated": store.count_unrated_between(conn, start, end),
        "rejected": store.count_rejects_between(conn, start, end),
    }


def _bad_rating(rating: dict[str, Any], task: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "rating_id": rating["rating_id"],
        "window": rating["window"],
        "level": rating["level"],
        "task_id": task["task_id"] if task else None,
        "contact_due": task["contact_due"] if task else None,
        "fix_due": task["fix_due"] if task else None,
    }


def task_list(
    conn: sqlite3.Connection, calendar: HallCalendar, now: float, open_only: bool = False
) -> dict[str, Any]:
    """Follow-up tasks, newest first, each saying whether it is overdue."""
    on = calendar.at_wall(now).date()
    listed = []
    for task in store.tasks(conn, open_only):
        late = overdue_stages(task, on)
        listed.append(
            {
                "task_id": task["task_id"],
                "rating_id": task["rating_id"],
                "window": task["window_id"],
                "level": task["level"],
                "state": task["state"],
                "contact_due": task["contact_due"],
                "fix_due": task["fix_due"],
                "overdue": bool(late),
                "overdue_steps": late,
                "due_problem": task["due_problem"],
                "contacted_by": task["contacted_by"],
                "contact_note": task["contact_note"],
                "fixed_by": task["fixed_by"],
                "fix_note": task["fix_note"],
            }
        )
    return {"tasks": listed}


def unrated(
    conn: sqlite3.Connection, settings: RatingsSection, now: float, every: bool = False
) -> dict[str, Any]:
    """The follow-up list: cases unrated for `follow_up_after_days` (all unrated: `every`)."""
    after = 0 if every else settings.follow_up_after_days
    cases = store.unrated_cases(conn, now - after * DAY_SECONDS)
    return {
        "after_days": after,
        "cases": [
            {
                "case_key": case["case_key"],
                "case_no": case["case_no"],
                "ticket": case["ticket"],
                "window": case["window_id"],
                "staff_id": case["staff_id"],
                "finished_at": case["finished_at"],
                "days_unrated": int((now - case["finished_at"]) // DAY_SECONDS),
            }
            for case in cases
        ],
    }


def verify(conn: sqlite3.Connection, hub_id: str) -> dict[str, Any]:
    """Walk the rating chain; every edited, deleted or moved rating is named."""
    algorithm = store.meta(conn, "hash") or "sha256"
    chain = store.chained_ratings(conn)
    breaks = find_breaks(digest_named(algorithm), hub_id, chain, journaled_links(conn))
    return {
        "ok": not breaks,
        "algorithm": algorithm,
        "ratings": len(chain),
        "breaks": [found.to_json() for found in breaks],
    }


def journaled_links(conn: sqlite3.Connection) -> dict[int, str]:
    """The chain link journaled for the city with each rating, by rating id."""
    rows = conn.execute(
        "SELECT data FROM events WHERE lane = 'rating' AND type = ?", (RECORDED_TYPE,)
    )
    links: dict[int, str] = {}
    for (data,) in rows:
        chain = json.loads(data).get("chain", {})
        links[int(chain["index"])] = str(chain["link"])
    return links
