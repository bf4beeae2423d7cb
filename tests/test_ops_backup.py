"""Backup under write load, and restore followed by sync to the real city receiver.

`hallhub backup` copies the journal while events are being committed; the copy is
whole (integrity_check) and consistent (each lane contiguous, as of one commit).
`hallhub restore` puts a copy back with a new epoch, so the events the hub writes
after the restore reach the city even where their sequence numbers repeat ones the
city holds from the history the restore threw away; none arrives twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hub.clock import SystemClock
from hub.events import Lane
from hub.journal import Journal
from hub.ops.backup import copy_journal
from hub.statelock import StateLock
from sync.uplink import Uplink
from tests.test_cli import hallhub
from tests.test_crash_end_to_end import read as rows
from tests.test_uplink import HUB, KEY, City, append, drain_all

__all__ = ["city"]


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    city = City(tmp_path)
    city.start()
    yield city
    city.close()


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "hallhub.yaml"
    path.write_text(yaml.safe_dump({"hub": {"id": HUB, "state_dir": str(tmp_path / "state")}}))
    return path


async def test_backup_while_the_hub_writes_is_whole_and_consistent(tmp_path: Path) -> None:
    """`hallhub backup` during steady ingest in two lanes: integrity ok, every lane in
    the copy contiguous from 1, nothing after the copy's moment half-present."""
    config = write_config(tmp_path)
    journal = Journal(tmp_path / "state" / "journal.sqlite3", HUB)
    journal.open()
    stop = asyncio.Event()

    async def keep_writing() -> None:
        start = 1
        while not stop.is_set():
            await append(journal, Lane.TELEMETRY, 200, start)
            await append(journal, Lane.RATING, 20, start)
            start += 200

    writer = asyncio.create_task(keep_writing())
    await asyncio.sleep(0.5)
    copy = tmp_path / "copies" / "journal-copy.sqlite3"
    result = await asyncio.to_thread(hallhub, "backup", str(copy), "--config", str(config))
    stop.set()
    await writer
    journal.close()

    assert result.returncode == 0, result.stderr
    assert rows(copy, "PRAGMA integrity_check") == [("ok",)]
    lanes = rows(copy, "SELECT lane, COUNT(*), MIN(seq), MAX(seq) FROM events GROUP BY lane")
    assert {lane for lane, *_ in lanes} == {"telemetry", "rating"}
    for _lane, count, first, last in lanes:
        assert (first, last) == (1, count)
    final = rows(journal.path, "SELECT COUNT(*) FROM events")[0][0]
    assert sum(count for _, count, _, _ in lanes) < final  # writing went on past the copy
    assert oct(copy.stat().st_mode & 0o777) == "0o600"


async def test_restore_then_sync_loses_nothing_and_doubles_nothing(
    tmp_path: Path, city: City
) -> None:
    """Backup at 20 ratings; 10 more are sent; the box is restored from the backup and
    writes 10 new ratings, which reuse seqs 21-30. Under the new epoch the city stores
    them: all 40 ids once each, nothing lost, nothing twice."""
    config = write_config(tmp_path)
    journal_path = tmp_path / "state" / "journal.sqlite3"
    journal = Journal(journal_path, HUB)
    journal.open()
    await append(journal, Lane.RATING, 20)
    await sync(journal, city)
    copy = copy_journal(journal_path, tmp_path / "backup.sqlite3")
    await append(journal, Lane.RATING, 10, start=21)
    await sync(journal, city)
    old_epoch = journal.epoch
    journal.close()

    result = hallhub("restore", str(copy), "--config", str(config))
    assert result.returncode == 0, result.stderr

    journal = Journal(journal_path, HUB)
    journal.open()
    assert journal.epoch != old_epoch
    assert journal.last_seqs()[Lane.RATING] == 20
    await append(journal, Lane.RATING, 10, start=101)
    await sync(journal, city)
    journal.close()

    at_city = Counter(event_id for _, _, event_id in city.rows())
    expected = {f"rating-{n}" for n in [*range(1, 31), *range(101, 111)]}
    assert set(at_city) == expected
    assert max(at_city.values()) == 1
    restored = rows(journal_path, "SELECT value FROM meta WHERE key = 'restored_from_epoch'")
    assert restored == [(str(old_epoch),)]
    assert list((tmp_path / "state").glob("journal.sqlite3.before-restore-*"))


async def sync(journal: Journal, city: City) -> None:
    async with Uplink(journal, city.url, KEY.key_id, KEY.secret, SystemClock(), 8) as uplink:
        await drain_all(uplink)


def test_restore_is_refused_while_a_hub_runs_on_the_state_folder(tmp_path: Path) -> None:
    """A running hub holds the state folder: restore refuses and changes nothing."""
    config = write_config(tmp_path)
    state = tmp_path / "state"
    journal = Journal(state / "journal.sqlite3", HUB)
    journal.open()
    journal.close()
    copy = copy_journal(state / "journal.sqlite3", tmp_path / "backup.sqlite3")
    before = (state / "journal.sqlite3").read_bytes()
    lock = StateLock(state)
    lock.acquire()
    try:
        result = hallhub("restore", str(copy), "--config", str(config))
    finally:
        lock.release()

    assert result.returncode == 1
    assert "in use by another hub" in result.stderr
    assert (state / "journal.sqlite3").read_bytes() == before


def test_restore_refuses_a_file_that_is_not_a_journal(tmp_path: Path) -> None:
    """A wrong file is refused with its name before anything is replaced."""
    config = write_config(tmp_path)
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database")

    result = hallhub("restore", str(bogus), "--config", str(config))

    assert result.returncode == 1
    assert "notes.txt" in result.stderr
    assert not (tmp_path / "state" / "journal.sqlite3").exists()


def test_restore_refuses_another_hubs_journal_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A sound journal of another hub is refused by name; the state folder is unchanged."""
    config = write_config(tmp_path)
    other = Journal(tmp_path / "other" / "journal.sqlite3", "hall-elsewhere")
    other.open()
    other.close()
    copy = copy_journal(other.path, tmp_path / "other-copy.sqlite3")

    result = hallhub("restore", str(copy), "--config", str(config))

    assert result.returncode == 1
    assert "belongs to hub 'hall-elsewhere'" in result.stderr
    assert sorted(path.name for path in (tmp_path / "state").iterdir()) == ["hub.lock"]
