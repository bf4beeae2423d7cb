"""The ratings tables in the journal file, and the reads the API and CLI share.

Tables (all in the hub's journal, written only by its writer thread):

* ``ratings``: one row per accepted rating; ``rating_id`` is its place in the
  chain and ``link`` seals it (`hub.ratings.chain`);
* ``rating_rejects``: refused ratings with the reason, kept for inspection;
* ``rating_cases``: cases a window finished, so unrated ones can be followed up;
* ``rating_tasks``: follow-up tasks for bad ratings;
* ``ratings_meta``: the chain's algorithm, how far pad ratings were taken from the
  rating lane, and how far recorded ratings were journaled for the city.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from hub.ratings.chain import ChainedRating

TABLES = (
    """CREATE TABLE IF NOT EXISTS ratings (
        rating_id    INTEGER PRIMARY KEY,
        case_key     TEXT,
        case_no      TEXT,
        ticket       TEXT,
        window_id    TEXT NOT NULL,
        staff_id     TEXT,
        channel      TEXT NOT NULL,
        level        TEXT NOT NULL,
        tags         TEXT NOT NULL,
        text         TEXT,
        follow_up    INTEGER NOT NULL,
        rated_at     REAL NOT NULL,
        citizen_key  TEXT,
        source       TEXT NOT NULL UNIQUE,
        link         TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS ratings_by_case ON ratings (case_key)",
    "CREATE INDEX IF NOT EXISTS ratings_by_time ON ratings (rated_at)",
    """CREATE TABLE IF NOT EXISTS rating_rejects (
        reject_id  INTEGER PRIMARY KEY,
        at         REAL NOT NULL,
        source     TEXT NOT NULL UNIQUE,
        reason     TEXT NOT NULL,
        detail     TEXT NOT NULL,
        rating     TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rating_cases (
        case_key     TEXT PRIMARY KEY,
        case_no      TEXT,
        ticket       TEXT,
        window_id    TEXT NOT NULL,
        staff_id     TEXT,
        finished_at  REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rating_tasks (
        task_id       INTEGER PRIMARY KEY,
        rating_id     INTEGER NOT NULL UNIQUE,
        window_id     TEXT NOT NULL,
        level         TEXT NOT NULL,
        state         TEXT NOT NULL,
        opened_at     REAL NOT NULL,
        contact_due   TEXT,
        fix_due       TEXT,
        due_problem   TEXT,
        contacted_by  TEXT,
        contacted_at  REAL,
        contact_note  TEXT,
        fixed_by      TEXT,
        fixed_at      REAL,
        fix_note      TEXT,
        alerted       TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS ratings_meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    )""",
)

RATING_COLUMNS = (
    "rating_id, case_key, case_no, ticket, window_id, staff_id, channel, level, tags, text,"
    " follow_up, rated_at, citizen_key, source, link"
)
TASK_STATES = ("open", "contacted", "fixed")


@dataclass(frozen=True)
class RatingInput:
    """A rating as a channel hands it in, before it is checked and chained."""

    window: str
    level: str
    channel: str
    source: str
    rated_at: float
    staff_id: str | None = None
    ticket: str | None = None
    case_no: str | None = None
    tags: tuple[str, ...] = ()
    text: str | None = None
    follow_up: bool = False
    citizen_key: str | None = None
    case_key: str | None = None  # given when the case record is known; else derived

    def shown(self) -> dict[str, Any]:
        """The rating as kept with a reject (no citizen key: it identifies a person)."""
        return {
            "window": self.window,
            "level": self.level,
            "channel": self.channel,
            "staff_id": self.staff_id,
            "ticket": self.ticket,
            "case_no": self.case_no,
            "tags": list(self.tags),
            "text": self.text,
            "follow_up": self.follow_up,
            "rated_at": self.rated_at,
        }


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in TABLES:
        conn.execute(statement)


def meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM ratings_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO ratings_meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def rating_fields(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """A stored rating's chained fields, exactly as they were sealed."""
    return {
        "rating_id": row[0],
        "case_key": row[1],
        "case_no": row[2],
        "ticket": row[3],
        "window": row[4],
        "staff_id": row[5],
        "channel": row[6],
        "level": row[7],
        "tags": json.loads(row[8]),
        "text": row[9],
        "follow_up": bool(row[10]),
        "rated_at": row[11],
        "citizen_key": row[12],
        "source": row[13],
    }


def chained_ratings(conn: sqlite3.Connection) -> list[ChainedRating]:
    """Every stored rating in chain order, as `chain.find_breaks` reads them."""
    rows = conn.execute(f"SELECT {RATING_COLUMNS} FROM ratings ORDER BY rating_id")
    return [ChainedRating(row[0], rating_fields(row), row[14]) for row in rows]


def last_link(conn: sqlite3.Connection) -> tuple[int, str | None]:
    row = conn.execute("SELECT rating_id, link FROM ratings ORDER BY rating_id DESC LIMIT 1")
    last = row.fetchone()
    return (0, None) if last is None else (int(last[0]), str(last[1]))


def insert_rating(conn: sqlite3.Connection, fields: dict[str, Any], link: str) -> None:
    conn.execute(
        f"INSERT INTO ratings ({RATING_COLUMNS}) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            fields["rating_id"],
            fields["case_key"],
            fields["case_no"],
            fields["ticket"],
            fields["window"],
            fields["staff_id"],
            fields["channel"],
            fields["level"],
            json.dumps(fields["tags"], ensure_ascii=False),
            fields["text"],
            int(fields["follow_up"]),
            fields["rated_at"],
            fields["citizen_key"],
            fields["source"],
            link,
        ),
    )


def ratings_of_case(conn: sqlite3.Connection, case_key: str) -> list[tuple[int, bool]]:
    """(rating id, is a follow-up) of each rating a case already has."""
    rows = conn.execute(
        "SELECT rating_id, follow_up FROM ratings WHERE case_key = ? ORDER BY rating_id",
        (case_key,),
    )
    return [(int(rating_id), bool(follow_up)) for rating_id, follow_up in rows]


def keep_reject(
    conn: sqlite3.Connection, at: float, rating: RatingInput, reason: str, detail: str
) -> int:
    """Keep a refused rating; a source refused before (a redelivery) is kept once."""
    cursor = conn.execute(
        "INSERT INTO rating_rejects (at, source, reason, detail, rating) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (source) DO NOTHING",
        (at, rating.source, reason, detail, json.dumps(rating.shown(), ensure_ascii=False)),
    )
    return int(cursor.lastrowid or 0)


def case_record(conn: sqlite3.Connection, case_key: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT case_key, case_no, ticket, window_id, staff_id, finished_at FROM rating_cases"
        " WHERE case_key = ?",
        (case_key,),
    ).fetchone()
    return row


def task_row(conn: sqlite3.Connection, task_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM rating_tasks WHERE task_id = ?", (task_id,)).fetchone()
    return None if row is None else dict(row)


def tasks(conn: sqlite3.Connection, open_only: bool = False) -> list[dict[str, Any]]:
    """Follow-up tasks, newest first (only those not yet fixed with `open_only`)."""
    where = "WHERE t.state != 'fixed'" if open_only else ""
    rows = conn.execute(
        "SELECT t.*, r.case_no, r.ticket, r.staff_id, r.rated_at FROM rating_tasks t"
        f" JOIN ratings r ON r.rating_id = t.rating_id {where} ORDER BY t.task_id DESC"
    )
    return [dict(row) for row in rows]


def ratings_between(conn: sqlite3.Connection, start: float, end: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {RATING_COLUMNS} FROM ratings WHERE rated_at >= ? AND rated_at < ?"
        " ORDER BY rating_id",
        (start, end),
    )
    return [rating_fields(row) for row in rows]


def task_of_ratings(conn: sqlite3.Connection, rating_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not rating_ids:
        return {}
    marks = ",".join("?" * len(rating_ids))
    rows = conn.execute(f"SELECT * FROM rating_tasks WHERE rating_id IN ({marks})", rating_ids)
    return {int(row["rating_id"]): dict(row) for row in rows}


def unrated_cases(conn: sqlite3.Connection, finished_before: float) -> list[dict[str, Any]]:
    """Cases finished at or before `finished_before` that have no rating, oldest first."""
    rows = conn.execute(
        "SELECT c.case_key, c.case_no, c.ticket, c.window_id, c.staff_id, c.finished_at"
        " FROM rating_cases c WHERE c.finished_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM ratings r WHERE r.case_key = c.case_key)"
        " ORDER BY c.finished_at",
        (finished_before,),
    )
    return [dict(row) for row in rows]


def count_unrated_between(conn: sqlite3.Connection, start: float, end: float) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM rating_cases c WHERE c.finished_at >= ? AND c.finished_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM ratings r WHERE r.case_key = c.case_key)",
        (start, end),
    ).fetchone()
    return int(row[0])


def rejects(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT reject_id, at, source, reason, detail, rating FROM rating_rejects"
        " ORDER BY reject_id DESC LIMIT ?",
        (limit,),
    )
    return [{**dict(row), "rating": json.loads(row["rating"])} for row in rows]


def count_rejects_between(conn: sqlite3.Connection, start: float, end: float) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM rating_rejects WHERE at >= ? AND at < ?", (start, end)
    ).fetchone()
    return int(row[0])
