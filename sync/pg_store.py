"""The city receiver's PostgreSQL store: the path for a city collecting from many hubs.

Same rule as `sync.city_store` (it shares `walk_lane`), with PostgreSQL doing the
guarding: a unique key on (hub_id, event_id) keeps each event once however many
receivers write, and the lane's mark row is locked (``SELECT … FOR UPDATE``) for
the batch's transaction, so two batches of one hub apply one after the other. The
city's command queue is kept here too, with the queries the SQLite store runs
(`sync.command_store`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg

from hub.events import LANE_ORDER, Lane
from sync.city_store import (
    LaneOutcome,
    LaneUpload,
    WireEvent,
    WireTombstone,
    event_json,
    status_document,
    walk_lane,
)
from sync.command_store import SCHEMA as COMMAND_SCHEMA
from sync.command_store import CommandTables, Execute
from sync.errors import BatchError, StoreUnavailable
from sync.rating_chain import RECENT_BREAKS, chain_status, check_rating_chain

logger = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        id                  BIGSERIAL PRIMARY KEY,
        hub_id              TEXT             NOT NULL,
        event_id            TEXT             NOT NULL,
        epoch               BIGINT           NOT NULL,
        lane                TEXT             NOT NULL,
        seq                 BIGINT           NOT NULL,
        device_id           TEXT             NOT NULL,
        kind                TEXT             NOT NULL,
        type                TEXT             NOT NULL,
        data                JSONB            NOT NULL,
        received_at         DOUBLE PRECISION NOT NULL,
        clock_synchronised  BOOLEAN          NOT NULL,
        device_time         DOUBLE PRECISION,
        retained            BOOLEAN          NOT NULL,
        stored_at           DOUBLE PRECISION NOT NULL,
        CONSTRAINT events_once UNIQUE (hub_id, event_id)
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_lane ON events (hub_id, lane, epoch, seq)",
    """CREATE TABLE IF NOT EXISTS tombstones (
        hub_id       TEXT             NOT NULL,
        epoch        BIGINT           NOT NULL,
        lane         TEXT             NOT NULL,
        seq          BIGINT           NOT NULL,
        through_seq  BIGINT           NOT NULL,
        event_id     TEXT,
        disposition  TEXT             NOT NULL,
        reason       TEXT             NOT NULL,
        stored_at    DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (hub_id, epoch, lane, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS rating_links (
        hub_id       TEXT   NOT NULL,
        chain_index  BIGINT NOT NULL,
        link         TEXT   NOT NULL,
        event_id     TEXT   NOT NULL,
        PRIMARY KEY (hub_id, chain_index)
    )""",
    """CREATE TABLE IF NOT EXISTS rating_chain_breaks (
        id           BIGSERIAL PRIMARY KEY,
        hub_id       TEXT             NOT NULL,
        chain_index  BIGINT           NOT NULL,
        event_id     TEXT             NOT NULL,
        problem      TEXT             NOT NULL,
        detail       TEXT             NOT NULL,
        seen_at      DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS lane_marks (
        hub_id      TEXT             NOT NULL,
        epoch       BIGINT           NOT NULL,
        lane        TEXT             NOT NULL,
        hwm         BIGINT           NOT NULL,
        repeats     BIGINT           NOT NULL DEFAULT 0,
        duplicates  BIGINT           NOT NULL DEFAULT 0,
        updated_at  DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (hub_id, epoch, lane)
    )""",
)


class PostgresBatchStore:
    """`BatchStore` in PostgreSQL, one connection behind a lock."""

    def __init__(self, dsn: str) -> None:
        self._lock = threading.Lock()
        self._dsn = dsn
        self._conn = self._connect()
        with self._conn.transaction():
            # One schema creator at a time, when several receivers start together.
            self._conn.execute("SELECT pg_advisory_xact_lock(7263)")
            for statement in (*SCHEMA, *COMMAND_SCHEMA):
                self._conn.execute(statement)
        self.commands = CommandTables(self._transaction, "format")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Execute]:
        """One transaction under the lock; rolled back if the block raises."""
        with self._lock:
            self._reconnect_if_lost()
            with self._conn.transaction():
                yield self._conn.execute

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._dsn, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    def _reconnect_if_lost(self) -> None:
        """A connection the server dropped (a restart, a failover) is opened again."""
        if self._conn.closed or self._conn.broken:
            logger.warning("PostgreSQL connection lost; connecting again")
            self._conn = self._connect()

    def apply_batch(
        self, hub_id: str, epoch: int, lanes: Mapping[Lane, LaneUpload], stored_at: float
    ) -> dict[Lane, LaneOutcome]:
        """Apply a batch in one transaction; return each lane's outcome.

        Content PostgreSQL cannot hold (a NUL character in text or JSON, a number out
        of range) raises `BatchError`, so the receiver refuses the batch with a 4xx and
        the hub isolates the event, instead of a 5xx it would retry for ever.
        """
        with self._lock:
            self._reconnect_if_lost()
            try:
                with self._conn.transaction():
                    outcomes = {
                        lane: self._apply_lane(hub_id, epoch, lane, lanes[lane], stored_at)
                        for lane in LANE_ORDER
                        if lane in lanes
                    }
            except psycopg.DataError as exc:
                raise BatchError([f"PostgreSQL cannot store this content: {exc}"]) from exc
        return outcomes

    def hub_status(self, hub_id: str) -> dict[str, Any]:
        """Per-lane high-water marks and counts for one hub."""
        with self._lock:
            self._reconnect_if_lost()
            return self._hub_status(hub_id)

    def _hub_status(self, hub_id: str) -> dict[str, Any]:
        with self._conn.transaction():
            marks = self._conn.execute(
                "SELECT epoch, lane, hwm, repeats, duplicates, updated_at FROM lane_marks"
                " WHERE hub_id = %s ORDER BY epoch, lane",
                (hub_id,),
            ).fetchall()
            counts = self._conn.execute(
                "SELECT lane, COUNT(*) FROM events WHERE hub_id = %s GROUP BY lane", (hub_id,)
            ).fetchall()
            tombstones = self._conn.execute(
                "SELECT lane, COUNT(*) FROM tombstones WHERE hub_id = %s GROUP BY lane", (hub_id,)
            ).fetchall()
            chain = self._chain_status(hub_id)
        return {**status_document(hub_id, marks, counts, tombstones), "rating_chain": chain}

    def _chain_status(self, hub_id: str) -> dict[str, Any]:
        conn = self._conn
        head = conn.execute(
            "SELECT chain_index, link FROM rating_links WHERE hub_id = %s"
            " ORDER BY chain_index DESC LIMIT 1",
            (hub_id,),
        ).fetchone()
        count = conn.execute(
            "SELECT COUNT(*) FROM rating_chain_breaks WHERE hub_id = %s", (hub_id,)
        ).fetchone()
        recent = conn.execute(
            "SELECT chain_index, event_id, problem, detail, seen_at FROM rating_chain_breaks"
            " WHERE hub_id = %s ORDER BY id DESC LIMIT %s",
            (hub_id, RECENT_BREAKS),
        ).fetchall()
        head_pair = (int(head[0]), str(head[1])) if head else None
        return chain_status(head_pair, int(count[0]) if count else 0, recent)

    def last_contact(self) -> dict[str, float]:
        """When each hub's lanes last moved, for the silence watch after a restart."""
        with self._lock:
            self._reconnect_if_lost()
            rows = self._conn.execute(
                "SELECT hub_id, MAX(updated_at) FROM lane_marks GROUP BY hub_id"
            ).fetchall()
        return {hub_id: float(at) for hub_id, at in rows}

    def _apply_lane(
        self, hub_id: str, epoch: int, lane: Lane, upload: LaneUpload, stored_at: float
    ) -> LaneOutcome:
        conn = self._conn
        walk = walk_lane(upload, self._lock_mark(hub_id, epoch, lane, stored_at))
        inserted = sum(self._insert(hub_id, event, stored_at) for event in walk.events)
        for tombstone in walk.tombstones:
            self._insert_tombstone(hub_id, epoch, lane, tombstone, stored_at)
        if lane is Lane.RATING:
            self._keep_rating_chain(hub_id, walk.events, stored_at)
        outcome = walk.outcome(inserted)
        conn.execute(
            "UPDATE lane_marks SET hwm = %s, repeats = repeats + %s,"
            " duplicates = duplicates + %s, updated_at = %s"
            " WHERE hub_id = %s AND epoch = %s AND lane = %s",
            (
                outcome.hwm,
                outcome.repeats,
                outcome.duplicates,
                stored_at,
                hub_id,
                epoch,
                lane.value,
            ),
        )
        return outcome

    def _lock_mark(self, hub_id: str, epoch: int, lane: Lane, stored_at: float) -> int | None:
        """Lock the lane's mark row for this transaction; its hwm, or None if it is new.

        A row this call creates (placeholder hwm 0, set when the batch is applied)
        means the city had no mark, so `walk_lane` starts at the hub's base. Another
        receiver creating it meanwhile makes the insert wait, then do nothing.
        """
        created = self._conn.execute(
            "INSERT INTO lane_marks (hub_id, epoch, lane, hwm, updated_at)"
            " VALUES (%s, %s, %s, 0, %s) ON CONFLICT DO NOTHING RETURNING hwm",
            (hub_id, epoch, lane.value, stored_at),
        ).fetchone()
        if created is not None:
            return None
        row = self._conn.execute(
            "SELECT hwm FROM lane_marks WHERE hub_id = %s AND epoch = %s AND lane = %s FOR UPDATE",
            (hub_id, epoch, lane.value),
        ).fetchone()
        return int(row[0]) if row else None

    def _keep_rating_chain(self, hub_id: str, events: list[WireEvent], stored_at: float) -> None:
        """Check the batch's rating events against the links held; keep links and breaks."""
        conn = self._conn

        def link_at(index: int) -> str | None:
            row = conn.execute(
                "SELECT link FROM rating_links WHERE hub_id = %s AND chain_index = %s",
                (hub_id, index),
            ).fetchone()
            return None if row is None else str(row[0])

        check = check_rating_chain(hub_id, events, link_at)
        for seen in check.links:
            conn.execute(
                "INSERT INTO rating_links (hub_id, chain_index, link, event_id)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (hub_id, seen.index, seen.link, seen.event_id),
            )
        for found in check.breaks:
            conn.execute(
                "INSERT INTO rating_chain_breaks (hub_id, chain_index, event_id, problem,"
                " detail, seen_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (hub_id, found.index, found.event_id, found.problem, found.detail, stored_at),
            )

    def _insert(self, hub_id: str, event: WireEvent, stored_at: float) -> bool:
        cursor = self._conn.execute(
            "INSERT INTO events (hub_id, event_id, epoch, lane, seq, device_id, kind, type,"
            " data, received_at, clock_synchronised, device_time, retained, stored_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT ON CONSTRAINT events_once DO NOTHING",
            (
                hub_id,
                event.event_id,
                event.epoch,
                event.lane.value,
                event.seq,
                event.device_id,
                event.kind,
                event.type,
                event_json(event.data),
                event.received_at,
                event.clock_synchronised,
                event.device_time,
                event.retained,
                stored_at,
            ),
        )
        return cursor.rowcount == 1

    def _insert_tombstone(
        self, hub_id: str, epoch: int, lane: Lane, tombstone: WireTombstone, stored_at: float
    ) -> None:
        self._conn.execute(
            "INSERT INTO tombstones (hub_id, epoch, lane, seq, through_seq, event_id,"
            " disposition, reason, stored_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (
                hub_id,
                epoch,
                lane.value,
                tombstone.seq,
                tombstone.last_seq,
                tombstone.event_id,
                tombstone.disposition,
                tombstone.reason,
                stored_at,
            ),
        )
