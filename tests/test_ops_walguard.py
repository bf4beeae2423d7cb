"""The write-ahead log stays bounded while readers hold old snapshots during ingest.

The real settings give a reader 60 s (``operations.wal.reader_grace``) before the
writer pauses for it; these tests use a 1 s grace and a reader holding 3 s, on a
real journal file with ingest running the whole time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from hub.events import Lane
from hub.journal import Journal
from hub.ops.settings import WalSection
from hub.ops.walguard import WalGuard, wal_size
from tests.fixtures.make_journal_v1 import observation

HOLD = 3.0
SETTINGS = WalSection(checkpoint_interval=0.1, reader_grace=1.0, writer_pause=5.0)


async def ingest(journal: Journal, stop: asyncio.Event) -> None:
    """Telemetry as fast as the journal commits it, in groups of 50."""
    n = 0
    while not stop.is_set():
        batch = []
        for _ in range(50):
            n += 1
            batch.append(
                journal.append(
                    observation(
                        f"wal-{n}", Lane.TELEMETRY, n, 1_767_225_600.0 + n, padding="x" * 200
                    )
                )
            )
        await asyncio.gather(*batch)


def hold_a_read_transaction(path: Path, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM events").fetchone()
        started.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


class WalSamples:
    """The WAL's size, sampled every 20 ms from a background thread."""

    def __init__(self, journal_path: Path) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(journal_path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), wal_size(path)))
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, until: float) -> int:
        return max(size for at, size in self.samples if at <= until)

    def smallest_after(self, since: float) -> int:
        return min(size for at, size in self.samples if at > since)


async def test_wal_shrinks_back_after_a_long_reader_lets_go(journal: Journal) -> None:
    """A reader holds one snapshot for 3 s during ingest: the WAL grows meanwhile,
    and once the reader has finished the WAL is emptied again."""
    stop = asyncio.Event()
    samples = WalSamples(journal.path)
    guard = asyncio.create_task(WalGuard(journal.path, SETTINGS).run())
    writer = asyncio.create_task(ingest(journal, stop))
    started = threading.Event()
    reader = asyncio.create_task(
        asyncio.to_thread(hold_a_read_transaction, journal.path, HOLD, started)
    )
    await reader
    released = time.monotonic()
    await asyncio.sleep(1.5)
    stop.set()
    await writer
    guard.cancel()
    samples.close()

    peak = samples.peak(released)
    assert peak > 1_000_000, "the reader should have held the WAL back while ingest ran"
    assert samples.smallest_after(released) < peak / 10


def overlapping_readers(path: Path, until: threading.Event) -> None:
    """Two readers taking turns so that one always holds a snapshot."""
    turns: list[threading.Thread] = []
    while not until.is_set():
        started = threading.Event()
        turn = threading.Thread(target=hold_a_read_transaction, args=(path, 0.6, started))
        turn.start()
        started.wait()
        turns.append(turn)
        time.sleep(0.3)
    for turn in turns:
        turn.join()


async def test_readers_that_always_overlap_cannot_starve_the_checkpoint(
    journal: Journal,
) -> None:
    """With a reader always open, a passive checkpoint never completes; after the grace
    the guard pauses the writer, the WAL is emptied, and ingest goes on."""
    stop = asyncio.Event()
    readers_stop = threading.Event()
    samples = WalSamples(journal.path)
    guard = WalGuard(journal.path, SETTINGS)
    guarding = asyncio.create_task(guard.run())
    writer = asyncio.create_task(ingest(journal, stop))
    readers = asyncio.create_task(
        asyncio.to_thread(overlapping_readers, journal.path, readers_stop)
    )
    await asyncio.sleep(1.0)
    grace_over = time.monotonic()
    await asyncio.sleep(3.0)
    readers_stop.set()
    await readers
    stop.set()
    await writer
    guarding.cancel()
    samples.close()

    peak = samples.peak(grace_over)
    assert peak > 500_000
    while_readers = [size for at, size in samples.samples if grace_over < at]
    assert min(while_readers) < peak / 10
    assert journal.last_seqs()[Lane.TELEMETRY] > 0
