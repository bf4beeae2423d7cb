"""Keeps the journal's write-ahead log bounded, even while readers hold old snapshots.

SQLite copies the WAL back into the database at checkpoints, but it can only reset
the WAL once no reader still needs its frames. Under steady ingest with readers
that overlap (the console, sync, a replay, an operator's ``sqlite3`` shell) that
moment may never come, and the WAL grows without end. The guard runs a passive
checkpoint every ``checkpoint_interval`` seconds; once the WAL has stayed
incompletely checkpointed for ``reader_grace`` seconds it runs a truncating
checkpoint that pauses the writer for at most ``writer_pause`` seconds: new readers
then see the checkpointed database, the old ones finish, and the WAL is emptied.
Ingest is only delayed meanwhile (the broker holds unacknowledged messages).
``journal_size_limit`` (set by the journal) caps what a reset WAL file keeps.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from hub.ops.settings import WalSection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """What one checkpoint achieved, in WAL frames (see PRAGMA wal_checkpoint)."""

    busy: bool
    log_frames: int
    checkpointed_frames: int

    @property
    def complete(self) -> bool:
        return not self.busy and self.log_frames == self.checkpointed_frames


def wal_size(journal_path: Path) -> int:
    """Bytes in the journal's WAL file right now (0 when there is none)."""
    try:
        return journal_path.with_name(journal_path.name + "-wal").stat().st_size
    except FileNotFoundError:
        return 0


class WalGuard:
    """Checkpoints the journal on a timer; forces one when readers starve it."""

    def __init__(self, journal_path: Path, settings: WalSection) -> None:
        self._path = journal_path
        self._settings = settings
        self._incomplete_since: float | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.checkpoint_interval)
            try:
                await asyncio.to_thread(self.check)
            except sqlite3.Error as exc:
                logger.warning("WAL checkpoint of %s failed: %s", self._path, exc)

    def check(self) -> Checkpoint:
        """One round: a passive checkpoint, escalated once readers have starved it."""
        passive = self._checkpoint("PASSIVE", wait=0.0)
        now = time.monotonic()
        if passive.complete:
            self._incomplete_since = None
            if wal_size(self._path) > 0:
                return self._checkpoint("TRUNCATE", wait=0.0)
            return passive
        if self._incomplete_since is None:
            self._incomplete_since = now
        if now - self._incomplete_since < self._settings.reader_grace:
            return passive
        logger.warning(
            "WAL of %s not checkpointed for %.0f s (%d bytes): pausing writes for readers",
            self._path,
            now - self._incomplete_since,
            wal_size(self._path),
        )
        forced = self._checkpoint("TRUNCATE", wait=self._settings.writer_pause)
        if forced.complete:
            self._incomplete_since = None
        return forced

    def _checkpoint(self, mode: str, wait: float) -> Checkpoint:
        conn = sqlite3.connect(self._path, timeout=wait, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            busy, log_frames, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        finally:
            conn.close()
        return Checkpoint(bool(busy), int(log_frames), int(done))
