"""The event journal: one SQLite file, one writer thread, many readers.

Everything the hub must not lose goes through here. One thread owns the only
writing connection and commits in groups: it takes whatever work is queued, runs it
in one transaction, commits (``synchronous=FULL``, so a commit survives a power
cut), and only then reports back. The MQTT ingest acknowledges a message to the
broker from that report, so an acknowledged message is always on disk.

Readers (console, sync, rules replay) open their own connections; WAL mode lets
them read while the writer writes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hub.errors import JournalClosedError, JournalError
from hub.events import LANE_ORDER, Event, Lane, Observation

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
GROUP_LIMIT = 1024
# Refused messages keep at most this many bytes; the size and a digest keep the rest.
DEAD_LETTER_KEEP_BYTES = 4096

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    lane          TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    event_id      TEXT    NOT NULL UNIQUE,
    epoch         INTEGER NOT NULL,
    device_id     TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    received_at   REAL    NOT NULL,
    clock_synced  INTEGER NOT NULL,
    device_time   REAL,
    retained      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (lane, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_device ON events (device_id, received_at);
CREATE TABLE IF NOT EXISTS sync_lanes (
    lane         TEXT PRIMARY KEY,
    acked_seq    INTEGER NOT NULL DEFAULT 0,
    last_ack_at  REAL,
    last_error   TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id           INTEGER PRIMARY KEY,
    received_at  REAL NOT NULL,
    last_at      REAL NOT NULL,
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    raw          BLOB,
    count        INTEGER NOT NULL DEFAULT 1,
    UNIQUE (source, reason, sha256)
);
CREATE TABLE IF NOT EXISTS rule_progress (
    lane  TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id         INTEGER PRIMARY KEY,
    alert_key        TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    condition        TEXT NOT NULL,
    severity         TEXT NOT NULL,
    team             TEXT NOT NULL,
    state            TEXT NOT NULL,
    message          TEXT NOT NULL,
    count            INTEGER NOT NULL DEFAULT 1,
    opened_at        REAL NOT NULL,
    opened_by_event  TEXT,
    acknowledged_at  REAL,
    acknowledged_by  TEXT,
    resolved_at      REAL,
    resolved_by      TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active
    ON alerts (alert_key) WHERE state != 'resolved';
"""


@dataclass(frozen=True, slots=True)
class Appended:
    """What became of one observation handed to the journal.

    ``conflict`` marks a duplicate event id whose content differs from the event
    already journaled under it: a device reusing message ids, not a redelivery.
    """

    event: Event
    duplicate: bool
    conflict: bool = False


IngestCallback = Callable[[Appended | BaseException], None]
CommitListener = Callable[[list[Event]], None]


@dataclass(slots=True)
class _Append:
    observation: Observation
    on_done: IngestCallback


@dataclass(slots=True)
class _Call:
    work: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future[Any]
    events: list[Event] = field(default_factory=list)


_STOP = object()


def connect(path: Path, *, writer: bool) -> sqlite3.Connection:
    """Open the journal file with the pragmas every connection needs."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    if writer:
        # auto_vacuum only takes effect before the first table exists.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA journal_size_limit = 67108864")
    else:
        conn.execute("PRAGMA query_only = 1")
    return conn


def row_to_event(row: sqlite3.Row, hub_id: str) -> Event:
    """Rebuild an `Event` from a row of the events table."""
    return Event(
        hub_id=hub_id,
        epoch=row["epoch"],
        lane=Lane(row["lane"]),
        seq=row["seq"],
        event_id=row["event_id"],
        device_id=row["device_id"],
        kind=row["kind"],
        type=row["type"],
        data=json.loads(row["data"]),
        received_at=row["received_at"],
        clock_synchronised=bool(row["clock_synced"]),
        device_time=row["device_time"],
        retained=bool(row["retained"]),
    )


class Journal:
    """The hub's SQLite journal and its single writer thread."""

    def __init__(self, path: Path, hub_id: str) -> None:
        self.path = path
        self.hub_id = hub_id
        self.epoch = 1
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._last_seq: dict[Lane, int] = {}
        self._listeners: list[CommitListener] = []
        self._closed = False
        # Events the `write()` work now running journaled, handed to listeners on commit.
        self._fresh_from_calls: list[Event] = []

    # -- lifecycle ---------------------------------------------------------------

    def open(self) -> None:
        """Create or open the file, check its identity, start the writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, writer=True)
        try:
            conn.executescript(SCHEMA)
            self._check_identity(conn)
            self._last_seq = self._read_last_seqs(conn)
        except BaseException:
            conn.close()  # a refused journal (another hub's, unreadable) is left closed
            raise
        self._thread = threading.Thread(
            target=self._run_writer, args=(conn,), name="journal-writer", daemon=True
        )
        self._thread.start()
        logger.info("journal %s open (hub %s, epoch %d)", self.path, self.hub_id, self.epoch)

    def close(self) -> None:
        """Finish queued work, then stop the writer and close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout=30)
        logger.info("journal %s closed", self.path)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener` from the writer thread with each group of new events."""
        self._listeners.append(listener)

    # -- writing -----------------------------------------------------------------

    def submit(self, observation: Observation, on_done: IngestCallback) -> None:
        """Queue an observation; `on_done` runs on the writer thread after commit."""
        if self._closed:
            raise JournalClosedError("journal is closed")
        self._queue.put(_Append(observation, on_done))

    async def append(self, observation: Observation) -> Appended:
        """Journal an observation and wait until it is committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Appended] = loop.create_future()

        def settle(outcome: Appended | BaseException) -> None:
            loop.call_soon_threadsafe(_settle_future, done, outcome)

        self.submit(observation, settle)
        return await done

    def call(self, work: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Run `work` inside the writer's next transaction."""
        if self._closed:
            raise JournalClosedError("journal is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Call(work, future))
        return future

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in the writer's transaction and await its result."""
        return await asyncio.wrap_future(self.call(work))

    # -- reading -----------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection; the caller closes it."""
        return connect(self.path, writer=False)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection for the length of a `with` block."""
        conn = self.reader()
        try:
            yield conn
        finally:
            conn.close()

    def insert_event(self, conn: sqlite3.Connection, observation: Observation) -> Event:
        """Journal `observation` inside `write()` work, in that work's transaction.

        A hall service uses it to commit its own state and the event that reports it
        atomically. Commit listeners hear of the event once the group commits.
        """
        appended = self._insert(conn, observation)
        if not appended.duplicate:
            self._fresh_from_calls.append(appended.event)
        return appended.event

    def last_seqs(self) -> dict[Lane, int]:
        """The highest sequence used in each lane (as of the last commit)."""
        return dict(self._last_seq)

    # -- writer thread -----------------------------------------------------------

    def _check_identity(self, conn: sqlite3.Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            # A new journal starts a new history: a random epoch keeps a replaced box or
            # a wiped journal from reusing (epoch, lane, seq) the city has already seen.
            self.epoch = secrets.randbits(48)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("hub_id", self.hub_id), ("epoch", str(self.epoch)), ("schema_version", "1")],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO sync_lanes (lane) VALUES (?)",
                [(lane.value,) for lane in LANE_ORDER],
            )
            return
        if meta["hub_id"] != self.hub_id:
            raise JournalError(
                f"{self.path} belongs to hub {meta['hub_id']!r}, not {self.hub_id!r}"
            )
        self.epoch = int(meta["epoch"])

    @staticmethod
    def _read_last_seqs(conn: sqlite3.Connection) -> dict[Lane, int]:
        rows = conn.execute("SELECT lane, MAX(seq) FROM events GROUP BY lane").fetchall()
        last = {lane: 0 for lane in LANE_ORDER}
        last.update({Lane(lane): seq for lane, seq in rows})
        return last

    def _run_writer(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                group, stop = self._take_group()
                if group:
                    self._commit_group(conn, group)
                if stop:
                    break
        finally:
            try:
                conn.execute("PRAGMA optimize")
            except sqlite3.Error as exc:  # a full disk must not keep the file open
                logger.warning("journal statistics not refreshed at close: %s", exc)
            conn.close()

    def _take_group(self) -> tuple[list[_Append | _Call], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        group: list[_Append | _Call] = [first]  # type: ignore[list-item]
        while len(group) < GROUP_LIMIT:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return group, True
            group.append(item)  # type: ignore[arg-type]
        return group, False

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Append | _Call]) -> None:
        outcomes: list[Any] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in group:
                outcomes.append(self._run_item(conn, item))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.error("journal commit failed, %d items refused: %s", len(group), exc)
            _rollback(conn)
            self._last_seq = self._read_last_seqs(conn)
            failure = JournalError(f"commit failed: {exc}")
            failure.__cause__ = exc
            outcomes = [failure] * len(group)

        self._report(group, outcomes)

    def _run_item(self, conn: sqlite3.Connection, item: _Append | _Call) -> Any:
        conn.execute("SAVEPOINT item")
        seqs_before = dict(self._last_seq)
        self._fresh_from_calls = []
        try:
            if isinstance(item, _Append):
                outcome: Any = self._insert(conn, item.observation)
            else:
                outcome = item.work(conn)
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK TO item")
            outcome = _storage_failure(exc) or exc
        except Exception as exc:  # one bad item must not sink the group
            conn.execute("ROLLBACK TO item")
            outcome = exc
        if isinstance(outcome, BaseException):
            # Events the rolled-back work journaled are gone: give their seqs back.
            self._last_seq = seqs_before
        elif isinstance(item, _Call):
            item.events = self._fresh_from_calls
        conn.execute("RELEASE item")
        return outcome

    def set_size_limit(self, max_bytes: int | None) -> concurrent.futures.Future[None]:
        """Cap the journal file's size (None lifts the cap); past it, commits fail as full."""

        def apply(conn: sqlite3.Connection) -> None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = (max_bytes // page_size) if max_bytes is not None else 0xFFFFFFFE
            conn.execute(f"PRAGMA max_page_count = {int(pages)}")

        return self.call(apply)

    def _insert(self, conn: sqlite3.Connection, obs: Observation) -> Appended:
        seq = self._last_seq[obs.lane] + 1
        cursor = conn.execute(
            "INSERT INTO events (lane, seq, event_id, epoch, device_id, kind, type, data,"
            " received_at, clock_synced, device_time, retained)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (
                obs.lane.value,
                seq,
                obs.event_id,
                self.epoch,
                obs.device_id,
                obs.kind,
                obs.type,
                json.dumps(obs.data, ensure_ascii=False),
                obs.received_at,
                int(obs.clock_synchronised),
                obs.device_time,
                int(obs.retained),
            ),
        )
        if cursor.rowcount == 0:
            row = conn.execute("SELECT * FROM events WHERE event_id = ?", (obs.event_id,))
            kept = row_to_event(row.fetchone(), self.hub_id)
            conflict = (kept.device_id, kept.type, kept.data) != (obs.device_id, obs.type, obs.data)
            return Appended(kept, duplicate=True, conflict=conflict)
        self._last_seq[obs.lane] = seq
        return Appended(self._event_from(obs, seq), duplicate=False)

    def _event_from(self, obs: Observation, seq: int) -> Event:
        return Event(
            hub_id=self.hub_id,
            epoch=self.epoch,
            lane=obs.lane,
            seq=seq,
            event_id=obs.event_id,
            device_id=obs.device_id,
            kind=obs.kind,
            type=obs.type,
            data=obs.data,
            received_at=obs.received_at,
            clock_synchronised=obs.clock_synchronised,
            device_time=obs.device_time,
            retained=obs.retained,
        )

    def _report(self, group: list[_Append | _Call], outcomes: list[Any]) -> None:
        fresh: list[Event] = []
        for item, outcome in zip(group, outcomes, strict=True):
            if isinstance(item, _Append):
                if isinstance(outcome, Appended) and not outcome.duplicate:
                    fresh.append(outcome.event)
                _safely(item.on_done, outcome)
            else:
                if not isinstance(outcome, BaseException):
                    fresh.extend(item.events)
                _settle_call(item.future, outcome)
        if fresh:
            for listener in self._listeners:
                _safely(listener, fresh)


def _settle_call(future: concurrent.futures.Future[Any], outcome: Any) -> None:
    # A caller that gave up waiting cancelled its future; the work is committed anyway.
    if not future.set_running_or_notify_cancel():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _settle_future(future: asyncio.Future[Appended], outcome: Appended | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


# SQLite primary result codes that mean the storage failed, not the data offered:
# BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
_STORAGE_FAILURES = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 26})


def _storage_failure(exc: sqlite3.Error) -> JournalError | None:
    """A `JournalError` if `exc` means the disk or file failed, else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in _STORAGE_FAILURES:
        return None
    failure = JournalError(f"journal storage failed: {exc}")
    failure.__cause__ = exc
    return failure


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        logger.debug("rollback after failed commit found no transaction")


def _safely(callback: Callable[[Any], None], argument: Any) -> None:
    try:
        callback(argument)
    except Exception:
        logger.exception("journal callback %r raised", callback)


def keep_dead_letter(
    conn: sqlite3.Connection,
    received_at: float,
    source: str,
    reason: str,
    detail: str,
    raw: bytes,
) -> None:
    """Keep a refused message for inspection: once per distinct content, with a count.

    Only the first bytes are kept, with the full size and a digest, so one huge or
    endlessly repeated message cannot fill the disk.
    """
    digest = hashlib.sha256(raw).hexdigest()
    conn.execute(
        "INSERT INTO dead_letters (received_at, last_at, source, reason, detail, size,"
        " sha256, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (source, reason, sha256)"
        " DO UPDATE SET count = count + 1, last_at = excluded.last_at",
        (
            received_at,
            received_at,
            source[:512],
            reason,
            detail[:1000],
            len(raw),
            digest,
            raw[:DEAD_LETTER_KEEP_BYTES],
        ),
    )


def reclaim_free_pages(conn: sqlite3.Connection, limit: int = 100_000) -> int:
    """Hand up to `limit` free pages back to the file system; returns how many.

    Python's sqlite3 steps a ``PRAGMA incremental_vacuum`` statement once, which
    frees a single page, so the pages are freed one statement at a time.
    """
    (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
    pages = min(int(free_pages), limit)
    for _ in range(pages):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return pages


def read_lane(
    conn: sqlite3.Connection, hub_id: str, lane: Lane, after_seq: int, limit: int
) -> list[Event]:
    """Events of `lane` with a sequence above `after_seq`, in order."""
    rows = conn.execute(
        "SELECT * FROM events WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?",
        (lane.value, after_seq, limit),
    )
    return [row_to_event(row, hub_id) for row in rows]


def event_ids(conn: sqlite3.Connection) -> Iterable[str]:
    """Every event id in the journal (for reconciliation)."""
    return (row[0] for row in conn.execute("SELECT event_id FROM events"))
