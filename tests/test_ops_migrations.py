"""Journal schema migrations: a journal of the first release opens with all its events.

`tests/fixtures/journal-v1.sqlite3` was written by the first release's journal code
(`tests/fixtures/make_journal_v1.py` shows how). The hub migrates it at start,
after taking a backup named by the old version into the state folder.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from hub.config import HubConfig
from hub.errors import JournalError
from hub.ops.migrations import LATEST
from hub.service import HubService
from tests.conftest import free_port
from tests.fixtures.make_journal_v1 import EVENTS_PER_LANE, FIXTURE, HUB_ID
from tests.hubkit import hub_config
from tests.test_crash_end_to_end import read as rows


def fixture_config(state_dir: Path) -> HubConfig:
    config = hub_config(state_dir, free_port(), "hall", [])
    config.hub.id = HUB_ID
    return config


async def test_first_release_journal_opens_with_all_its_events(tmp_path: Path) -> None:
    """Migrated at start: every event, its epoch and its sequence are still there, the
    schema is the latest, and a backup of the old version sits in state/backups."""
    journal = tmp_path / "journal.sqlite3"
    shutil.copyfile(FIXTURE, journal)
    expected = rows(FIXTURE, "SELECT lane, seq, event_id, epoch, data FROM events ORDER BY 1, 2")

    service = HubService(fixture_config(tmp_path))
    await service.start()
    try:
        with service.journal.reading() as conn:
            kept = conn.execute(
                "SELECT lane, seq, event_id, epoch, data FROM events ORDER BY 1, 2"
            ).fetchall()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        last_seqs = service.journal.last_seqs()
    finally:
        await service.stop()

    assert [tuple(row) for row in kept] == expected
    assert len(expected) == 5 * EVENTS_PER_LANE
    assert version == LATEST
    assert set(last_seqs.values()) == {EVENTS_PER_LANE}
    backups = list((tmp_path / "backups").glob("journal-v1-*.sqlite3"))
    assert len(backups) == 1
    assert rows(backups[0], "PRAGMA integrity_check") == [("ok",)]
    assert rows(backups[0], "SELECT COUNT(*) FROM events") == [(len(expected),)]
    assert rows(journal, "SELECT name FROM sqlite_master WHERE name = 'events_by_lane_time'")


async def test_new_journal_starts_at_the_latest_version_without_a_backup(tmp_path: Path) -> None:
    """A hub's first start stamps its new journal as current; nothing to back up."""
    service = HubService(hub_config(tmp_path, free_port(), "hall", []))
    await service.start()
    await service.stop()
    service = HubService(hub_config(tmp_path, free_port(), "hall", []))
    await service.start()
    await service.stop()

    assert rows(tmp_path / "journal.sqlite3", "PRAGMA user_version") == [(LATEST,)]
    assert not (tmp_path / "backups").exists()


async def test_journal_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    """After a rollback, a journal a newer release migrated is refused with its version,
    not opened and damaged: restore the backup taken before that upgrade instead."""
    journal = tmp_path / "journal.sqlite3"
    shutil.copyfile(FIXTURE, journal)
    conn = sqlite3.connect(journal)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()

    service = HubService(fixture_config(tmp_path))
    with pytest.raises(JournalError, match=f"schema version {LATEST + 1}"):
        await service.start()

    assert rows(journal, "PRAGMA user_version") == [(LATEST + 1,)]
    assert rows(journal, "SELECT COUNT(*) FROM events") == [(5 * EVENTS_PER_LANE,)]
