"""Backup and restore of the journal.

`copy_journal` takes a consistent copy while the hub keeps writing: ``VACUUM INTO``
runs inside one read transaction, so the copy is the journal as of one commit,
never half of one, and WAL mode lets the writer go on meanwhile. The copy is
written beside its destination under a temporary name, checked with
``PRAGMA integrity_check`` and only then renamed into place.

`restore_journal` puts a copy back while the hub is stopped (it takes the state
folder's lock) and gives the journal a new random epoch. The city keys sequence
numbers by (hub, epoch, lane): the restored journal re-uses sequence numbers that
the lost history after the copy had already sent, and under the old epoch the
city would take the new events for ones it holds and skip them. Under the new
epoch they are new places; events the city already has are recognised by id.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from hub.errors import HallhubError
from hub.statelock import StateLock

logger = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"


class BackupError(HallhubError):
    """A backup or restore failed. Carries the file concerned and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Restored:
    """What a restore did."""

    journal: Path
    previous_journal: Path | None
    old_epoch: int
    new_epoch: int


def copy_journal(source: Path, destination: Path) -> Path:
    """Write a consistent, checked copy of the journal at `source` to `destination`."""
    if destination.exists():
        raise BackupError(destination, "already exists; choose a new name")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("VACUUM INTO ?", (str(partial),))
        finally:
            conn.close()
        check_integrity(partial)
        os.chmod(partial, 0o600)
        partial.replace(destination)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(source, f"copy failed: {exc}") from exc
    logger.info("journal %s copied to %s", source, destination)
    return destination


def check_integrity(path: Path) -> None:
    """Raise `BackupError` unless `path` is a sound SQLite journal."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(path, f"not a hallhub journal: {exc}") from exc
    if verdict != "ok":
        raise BackupError(path, f"integrity check failed: {verdict}")


def restore_journal(source: Path, state_dir: Path, hub_id: str) -> Restored:
    """Put the copy at `source` back as the journal of a stopped hub, with a new epoch."""
    check_integrity(source)
    lock = StateLock(state_dir)
    lock.acquire()
    try:
        return _swap_in(source, state_dir, hub_id)
    finally:
        lock.release()


def _swap_in(source: Path, state_dir: Path, hub_id: str) -> Restored:
    journal = state_dir / JOURNAL_FILE
    incoming = state_dir / f".{JOURNAL_FILE}.restoring"
    shutil.copyfile(source, incoming)
    os.chmod(incoming, 0o600)
    try:
        old_epoch, new_epoch = _new_epoch(incoming, hub_id, source)
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise

    previous = _set_aside(journal)
    for suffix in ("-wal", "-shm"):
        journal.with_name(journal.name + suffix).unlink(missing_ok=True)
    incoming.replace(journal)
    logger.warning(
        "journal restored from %s; epoch %d replaced by %d", source, old_epoch, new_epoch
    )
    return Restored(journal, previous, old_epoch, new_epoch)


def _new_epoch(path: Path, hub_id: str, source: Path) -> tuple[int, int]:
    """Draw and record a new epoch in the copy; (old, new)."""
    new_epoch = secrets.randbits(48)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("hub_id") != hub_id:
            raise BackupError(source, f"belongs to hub {meta.get('hub_id')!r}, not {hub_id!r}")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [
                ("epoch", str(new_epoch)),
                ("restored_at", str(time.time())),
                ("restored_from_epoch", meta["epoch"]),
            ],
        )
        _record_in_audit_trail(conn, source, int(meta["epoch"]), new_epoch)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return int(meta["epoch"]), new_epoch


def _record_in_audit_trail(
    conn: sqlite3.Connection, source: Path, old_epoch: int, new_epoch: int
) -> None:
    """Note the restore in the audit trail, when the copy has one (hubs create it at start)."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_trail'").fetchone()
    if found is None:
        return
    detail = {"source": str(source), "old_epoch": old_epoch, "new_epoch": new_epoch}
    conn.execute(
        "INSERT INTO audit_trail (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (time.time(), "hallhub restore", "journal.restore", "journal", json.dumps(detail)),
    )


def _set_aside(journal: Path) -> Path | None:
    """Keep the journal being replaced, in case the restore was a mistake."""
    if not journal.exists():
        return None
    kept = journal.with_name(f"{journal.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
    # Fold the WAL into the file first, so the kept journal is whole on its own.
    conn = sqlite3.connect(journal, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    journal.replace(kept)
    return kept
