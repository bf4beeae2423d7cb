"""Journal schema versions, upgraded at start with a backup taken first.

The version lives in ``PRAGMA user_version``. Journals written before versions
were numbered read 0 there and hold the first schema, which counts as version 1.
Each migration moves one version up, in one transaction with the version stamp.
Before an existing journal is migrated, a consistent copy of it is written to
``<state_dir>/backups/journal-v<old>-<time>.sqlite3``; if a migration fails, the
journal is left as it was and the hub does not start.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from hub.errors import JournalError
from hub.ops.backup import copy_journal

logger = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]


def _index_events_by_lane_and_time(conn: sqlite3.Connection) -> None:
    """Version 2: retention deletes by lane and age, without scanning every event."""
    conn.execute("CREATE INDEX IF NOT EXISTS events_by_lane_time ON events (lane, received_at)")


# MIGRATIONS[n] turns version n + 1 into version n + 2. Append only; never edit one.
MIGRATIONS: list[Migration] = [_index_events_by_lane_and_time]
LATEST = len(MIGRATIONS) + 1


class MigrationError(JournalError):
    """A journal could not be brought to the current schema."""

    def __init__(self, path: Path, version: int, reason: str) -> None:
        self.path = path
        self.version = version
        super().__init__(f"{path}: cannot migrate from schema version {version}: {reason}")


def schema_version(conn: sqlite3.Connection) -> int:
    """The journal's schema version (1 for journals from before versions were kept)."""
    stamped = int(conn.execute("PRAGMA user_version").fetchone()[0])
    return stamped if stamped > 0 else 1


def migrate_existing(path: Path, backup_dir: Path) -> Path | None:
    """Bring the journal at `path` to the latest version; the backup made, if any."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        version = schema_version(conn)
        if version > LATEST:
            raise MigrationError(path, version, f"newer than this hallhub knows ({LATEST})")
        if version == LATEST:
            _stamp(conn, LATEST)
            return None
        backup = _backup_before(path, backup_dir, version)
        _apply(conn, path, version)
    except sqlite3.Error as exc:
        raise MigrationError(path, 0, str(exc)) from exc
    finally:
        conn.close()
    logger.info("journal %s migrated to schema %d; backup in %s", path, LATEST, backup)
    return backup


def stamp_new(conn: sqlite3.Connection) -> None:
    """On a journal just created with the base schema: apply every migration, stamp it."""
    for migration in MIGRATIONS:
        migration(conn)
    conn.execute(f"PRAGMA user_version = {LATEST}")


def _apply(conn: sqlite3.Connection, path: Path, version: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in MIGRATIONS[version - 1 :]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {LATEST}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise MigrationError(path, version, str(exc)) from exc


def _stamp(conn: sqlite3.Connection, version: int) -> None:
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) != version:
        conn.execute(f"PRAGMA user_version = {version}")


def _backup_before(path: Path, backup_dir: Path, version: int) -> Path:
    backup_dir.mkdir(parents=True, exist_ok=True)
    target = backup_dir / f"journal-v{version}-{time.strftime('%Y%m%d-%H%M%S')}.sqlite3"
    copy_journal(path, target)
    return target
