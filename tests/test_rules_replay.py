"""`hallhub rules replay`: a candidate rule set against the journal, with no side effects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from hub.cli import main
from hub.events import Lane, Observation, hub_event_id
from hub.journal import Journal
from rules import store
from rules.engine import Firing
from rules.replay import PAGE, JournalSnapshot
from tests.rulekit import wall_at

CONFIG = """\
hub: {{id: hall-replay, state_dir: "{state}", clock_sync: assume}}
devices:
  - {{id: occ-1, model: occupancy-sensor-os1, zone: 1F waiting zone}}
  - {{id: pad-1, model: rating-pad-rp5, zone: 1F windows, window: W01}}
"""

CANDIDATE = """\
overrides:
  crowding:
    if:
      threshold: {above: 20, clear_below: 10}
  bad-rating:
    enabled: false
"""


def observation(device_id: str, kind: str, type_: str, at: float, **data: object) -> Observation:
    lane = Lane.RATING if kind == "rating_pad" else Lane.TELEMETRY
    return Observation(hub_event_id(), lane, device_id, kind, type_, dict(data), at, True)


async def fill_journal(journal: Journal) -> None:
    """A Monday: the waiting zone holds 25 people for 20 minutes, then empties; one bad rating.

    The live hub journaled its firing of bad-rating, as `rule_firings` records it.
    """
    start = wall_at("2026-03-02 10:00")
    for minute in range(0, 21, 5):
        await journal.append(
            observation("occ-1", "occupancy_sensor", "count", start + minute * 60, occupancy=25)
        )
    await journal.append(
        observation("occ-1", "occupancy_sensor", "count", start + 1500, occupancy=5)
    )
    await journal.append(
        observation("pad-1", "rating_pad", "rating", start + 1600, level="不满意", window="W01")
    )
    await journal.write(store.create_tables)
    await journal.write(
        lambda conn: store.save(conn, [_bad_rating_firing()], {}, start + 1600, 0, "b")
    )


def _bad_rating_firing() -> Firing:
    return Firing("bad-rating", "pad-1", "then", ("ev",), ())


async def write_counts(journal: Journal, start: float, count: int, offset: int) -> None:
    """Journal `count` people counts, one a second from `start + offset`."""
    for i in range(count):
        await journal.append(
            observation("occ-1", "occupancy_sensor", "count", start + offset + i, occupancy=i)
        )


@pytest.fixture
def hall(tmp_path: Path) -> tuple[Path, Path, Path]:
    state = tmp_path / "state"
    journal = Journal(state / "journal.sqlite3", "hall-replay")
    journal.open()
    asyncio.run(fill_journal(journal))
    journal.close()
    config = tmp_path / "hall.yaml"
    config.write_text(CONFIG.format(state=state), encoding="utf-8")
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "crowding.yaml").write_text(CANDIDATE, encoding="utf-8")
    return config, candidate, state / "journal.sqlite3"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_replay_reports_what_the_candidate_would_do_and_the_difference(
    hall: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Lower crowding threshold: crowding raised and cleared; bad rating off: not raised."""
    config, candidate, journal = hall
    wal = journal.with_name(journal.name + "-wal")
    before = (digest(journal), wal.stat().st_size if wal.exists() else 0)

    code = main(["rules", "replay", "--config", str(config), "--from", "2026-03-02",
                 "--to", "2026-03-02", "--rules", str(candidate)])  # fmt: skip
    report = json.loads(capsys.readouterr().out)

    assert code == 0 and report["events"] == 7
    assert report["by_rule"]["current"] == {"bad-rating": 1}
    assert report["by_rule"]["recorded"] == {"bad-rating": 1}
    assert report["by_rule"]["candidate"] == {"crowding": 2}
    assert [f["rule_id"] for f in report["only_current"]] == ["bad-rating"]
    phases = [(f["rule_id"], f["phase"]) for f in report["only_candidate"]]
    assert phases == [("crowding", "then"), ("crowding", "otherwise")]
    assert (digest(journal), wal.stat().st_size if wal.exists() else 0) == before


def test_replay_outside_the_range_sees_nothing(
    hall: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The day before has no events and so no firings."""
    config, candidate, _ = hall
    main(["rules", "replay", "--config", str(config), "--from", "2026-03-01",
          "--to", "2026-03-01", "--rules", str(candidate)])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == 0 and report["only_candidate"] == []


def test_a_bad_date_is_a_clear_error(
    hall: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable --from is refused with exit code 2 and the reason."""
    config, candidate, _ = hall
    code = main(["rules", "replay", "--config", str(config), "--from", "yesterday",
                 "--to", "2026-03-01", "--rules", str(candidate)])  # fmt: skip
    assert code == 2 and "not a date" in capsys.readouterr().err


def test_ingest_continues_while_a_replay_reads_its_snapshot(tmp_path: Path) -> None:
    """Events committed while a replay reads are not blocked and not in its snapshot."""
    journal = Journal(tmp_path / "journal.sqlite3", "hall-replay")
    journal.open()
    start = wall_at("2026-03-02 10:00")

    asyncio.run(write_counts(journal, start, 3000, 0))
    snapshot = JournalSnapshot(journal.path, "hall-replay")
    seen: list[int] = []
    reader = threading.Thread(
        target=lambda: seen.append(sum(1 for _ in snapshot.events(start, start + 10_000)))
    )
    reader.start()
    asyncio.run(write_counts(journal, start, 500, 5000))
    reader.join(timeout=30)
    journal.close()
    assert seen == [3000]
    assert journal.last_seqs()[Lane.TELEMETRY] == 3500


def test_a_replay_between_pages_holds_no_snapshot_so_the_wal_can_be_truncated(
    tmp_path: Path,
) -> None:
    """Mid-replay, a checkpoint can still reset the write-ahead log to zero bytes.

    A reader that kept one read transaction open for the whole replay would pin the
    WAL: every event ingested meanwhile would make it grow until the replay ended.
    """
    journal = Journal(tmp_path / "journal.sqlite3", "hall-replay")
    journal.open()
    start = wall_at("2026-03-02 10:00")

    asyncio.run(write_counts(journal, start, PAGE + 10, 0))
    replay = JournalSnapshot(journal.path, "hall-replay").events(start, start + 100_000)
    next(replay)  # the first page is read and the replay is under way
    asyncio.run(write_counts(journal, start, 200, 50_000))  # ingest goes on, growing the WAL
    wal = journal.path.with_name(journal.path.name + "-wal")
    with contextlib.closing(sqlite3.connect(journal.path, isolation_level=None)) as conn:
        checkpoint = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    wal_bytes = wal.stat().st_size
    remaining = sum(1 for _ in replay)
    journal.close()

    assert checkpoint[0] == 0, "a reader pinned the WAL: the checkpoint was busy"
    assert wal_bytes == 0
    assert remaining == PAGE + 9  # the snapshot ends where it began: no new events
