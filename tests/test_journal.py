"""The journal: sequences per lane, stable ids, group commit, failures isolated."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from hub.errors import JournalError
from hub.events import Lane, Observation, device_event_id
from hub.journal import Journal, read_lane


def observation(message_id: str, lane: Lane = Lane.TELEMETRY, device: str = "occ-1") -> Observation:
    return Observation(
        event_id=device_event_id(device, message_id),
        lane=lane,
        device_id=device,
        kind="occupancy_sensor",
        type="count",
        data={"occupancy": 3},
        received_at=1_767_225_600.0,
        clock_synchronised=True,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    opened = Journal(tmp_path / "journal.sqlite3", "hall-test")
    opened.open()
    yield opened
    opened.close()


async def test_sequences_grow_per_lane_without_gaps(journal: Journal) -> None:
    """Each lane numbers its events 1, 2, 3… on its own, whatever the interleaving."""
    lanes = [Lane.ALARM, Lane.TELEMETRY, Lane.ALARM, Lane.RATING, Lane.TELEMETRY, Lane.ALARM]
    results = await asyncio.gather(
        *(journal.append(observation(f"m{i}", lane)) for i, lane in enumerate(lanes))
    )

    by_lane: dict[Lane, list[int]] = {}
    for result in results:
        by_lane.setdefault(result.event.lane, []).append(result.event.seq)
    assert sorted(by_lane[Lane.ALARM]) == [1, 2, 3]
    assert sorted(by_lane[Lane.TELEMETRY]) == [1, 2]
    assert by_lane[Lane.RATING] == [1]


async def test_redelivered_message_is_kept_once(journal: Journal) -> None:
    """The same device message id twice gives one event and reports the duplicate."""
    first = await journal.append(observation("boot1-7"))
    again = await journal.append(observation("boot1-7"))
    other = await journal.append(observation("boot1-8"))

    assert not first.duplicate and again.duplicate
    assert again.event.seq == first.event.seq
    assert other.event.seq == first.event.seq + 1  # a duplicate consumes no sequence
    with journal.reading() as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2


async def test_sequences_continue_after_reopen(tmp_path: Path) -> None:
    """A restarted hub continues each lane's sequence where the file left it."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, "hall-test")
    journal.open()
    for i in range(3):
        await journal.append(observation(f"a{i}", Lane.RATING))
    journal.close()

    reopened = Journal(path, "hall-test")
    reopened.open()
    result = await reopened.append(observation("a3", Lane.RATING))
    with reopened.reading() as conn:
        events = read_lane(conn, "hall-test", Lane.RATING, 0, 10)
    reopened.close()

    assert result.event.seq == 4
    assert [e.seq for e in events] == [1, 2, 3, 4]


def test_journal_of_another_hub_is_refused(tmp_path: Path) -> None:
    """Opening another hub's journal by mistake fails loudly instead of mixing histories."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, "hall-a")
    journal.open()
    journal.close()

    with pytest.raises(JournalError, match="belongs to hub 'hall-a'"):
        Journal(path, "hall-b").open()


async def test_failing_work_does_not_sink_its_group(journal: Journal) -> None:
    """One failing write is refused alone; events committed in the same group stand."""

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    failing = journal.call(broken)
    kept = await journal.append(observation("ok-1"))

    with pytest.raises(sqlite3.OperationalError):
        failing.result(timeout=5)
    with journal.reading() as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    assert kept.event.seq == 1


def test_database_settings(journal: Journal) -> None:
    """WAL, full fsync on commit and incremental auto-vacuum are set on the file."""
    with journal.reading() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


async def test_commit_listener_sees_only_new_events(journal: Journal) -> None:
    """Rules and the uplink hear of each event once, never of a redelivery."""
    seen: list[str] = []
    journal.add_commit_listener(lambda events: seen.extend(e.event_id for e in events))

    await journal.append(observation("x1"))
    await journal.append(observation("x1"))
    await journal.append(observation("x2"))
    await asyncio.sleep(0.05)

    assert seen == [device_event_id("occ-1", "x1"), device_event_id("occ-1", "x2")]


async def test_events_journaled_inside_work_commit_with_it_and_reach_listeners(
    journal: Journal,
) -> None:
    """A hall service's state and its event commit together: listeners hear of the event;
    work that fails after journaling one leaves no event and gives its seq back."""
    seen: list[tuple[str, int]] = []
    journal.add_commit_listener(lambda events: seen.extend((e.event_id, e.seq) for e in events))

    def issue(conn: sqlite3.Connection) -> int:
        return journal.insert_event(conn, observation("t1", Lane.TICKET)).seq

    def issue_then_fail(conn: sqlite3.Connection) -> None:
        journal.insert_event(conn, observation("t2", Lane.TICKET))
        raise ValueError("the ticket could not be stored")

    first = await journal.write(issue)
    with pytest.raises(ValueError):
        await journal.write(issue_then_fail)
    after = await journal.append(observation("t3", Lane.TICKET))
    await asyncio.sleep(0.05)

    assert (first, after.event.seq) == (1, 2)
    assert seen == [(device_event_id("occ-1", "t1"), 1), (device_event_id("occ-1", "t3"), 2)]
    with journal.reading() as conn:
        kept = [event.seq for event in read_lane(conn, "hall-test", Lane.TICKET, 0, 10)]
    assert kept == [1, 2]
