"""The command queue's tables: one set of queries for the SQLite and PostgreSQL stores.

The receiver keeps the city's commands beside the events, in the same database,
so a restart forgets nothing: a pending command is handed to the hub's next poll,
an answer can still be read, and the configuration version each hub last reported
stays known. Every statement here is SQL that SQLite and PostgreSQL both take as
written; they carry ``?`` placeholders, turned into psycopg's ``%s`` for
PostgreSQL, so there is one query set to keep right.

Per hub, ``command_hubs.queued`` counts the commands ever queued and gives each
one its ``position``: the queue's order, never shown (a command's id is random).
Queueing bumps it with an upsert, which also locks the hub's row until the
transaction ends; so two receivers on one PostgreSQL database queueing for the
same hub take turns, and the pending cap holds. SQLite gets the same from
``BEGIN IMMEDIATE``. Answered commands beyond a bound per hub are deleted, oldest
first, when the next answer is recorded; a pending command is never deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sync.errors import CommandQueueFull

logger = logging.getLogger(__name__)

# Statements valid in both databases (SQLite reads BIGINT as INTEGER and DOUBLE
# PRECISION as REAL), all idempotent: a receiver database from before the queue was
# stored gets the tables when a receiver next opens it.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS command_hubs (
        hub_id         TEXT             NOT NULL PRIMARY KEY,
        queued         BIGINT           NOT NULL,
        active_config  TEXT,
        reported_at    DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS commands (
        command_id   TEXT             NOT NULL PRIMARY KEY,
        hub_id       TEXT             NOT NULL,
        position     BIGINT           NOT NULL,
        type         TEXT             NOT NULL,
        payload      TEXT             NOT NULL,
        queued_at    DOUBLE PRECISION NOT NULL,
        reply        TEXT,
        answered_at  DOUBLE PRECISION,
        UNIQUE (hub_id, position)
    )""",
)

_BUMP_HUB = (
    "INSERT INTO command_hubs (hub_id, queued) VALUES (?, 1)"
    " ON CONFLICT (hub_id) DO UPDATE SET queued = command_hubs.queued + 1"
    " RETURNING queued"
)
_COUNT_PENDING = "SELECT COUNT(*) FROM commands WHERE hub_id = ? AND answered_at IS NULL"
_INSERT = (
    "INSERT INTO commands (command_id, hub_id, position, type, payload, queued_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "SELECT command_id, hub_id, type, payload, reply FROM commands"
_PENDING = f"{_COLUMNS} WHERE hub_id = ? AND answered_at IS NULL ORDER BY position"
_BY_ID = f"{_COLUMNS} WHERE command_id = ?"
_RECORD_REPLY = "UPDATE commands SET reply = ?, answered_at = ? WHERE command_id = ?"
_RECORD_ACTIVE = "UPDATE command_hubs SET active_config = ?, reported_at = ? WHERE hub_id = ?"
_ACTIVE = "SELECT active_config FROM command_hubs WHERE hub_id = ?"
_REPORT_ACTIVE = (
    "INSERT INTO command_hubs (hub_id, queued, active_config, reported_at) VALUES (?, 0, ?, ?)"
    " ON CONFLICT (hub_id) DO UPDATE SET active_config = excluded.active_config,"
    " reported_at = excluded.reported_at"
)
# Deletes the hub's answered commands from the (keep + 1)th newest down; when fewer
# are answered the subquery is NULL and nothing matches.
_PRUNE_ANSWERED = (
    "DELETE FROM commands WHERE hub_id = ? AND answered_at IS NOT NULL AND position <= ("
    "SELECT position FROM commands WHERE hub_id = ? AND answered_at IS NOT NULL"
    " ORDER BY position DESC LIMIT 1 OFFSET ?)"
)


@dataclass(slots=True)
class Command:
    """One thing the city asks a hub to do, and the hub's answer once it came."""

    command_id: str
    hub_id: str
    type: str
    payload: dict[str, Any]
    reply: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The command as the hub receives it."""
        return {"command_id": self.command_id, "type": self.type, "payload": self.payload}


class Rows(Protocol):
    """What both drivers' cursors offer."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


Execute = Callable[[str, Sequence[Any]], Rows]


class CommandTables:
    """The command queue in a receiver store; each method is one transaction.

    `transaction` opens a transaction on the store's connection (under its lock)
    and yields its ``execute``; `paramstyle` is the driver's: ``qmark`` (sqlite3)
    or ``format`` (psycopg). Methods block: call them off the event loop.
    """

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Execute]],
        paramstyle: Literal["qmark", "format"],
    ) -> None:
        self._begin = transaction
        self._paramstyle = paramstyle

    def add(self, command: Command, queued_at: float, max_pending: int) -> None:
        """Store a new pending command at the end of its hub's queue.

        Raises `CommandQueueFull` when the hub already has `max_pending` pending.
        """
        with self._transaction() as execute:
            position = int(execute(_BUMP_HUB, (command.hub_id,)).fetchall()[0][0])
            pending = int(execute(_COUNT_PENDING, (command.hub_id,)).fetchone()[0])
            if pending >= max_pending:
                raise CommandQueueFull(command.hub_id, max_pending)

            execute(
                _INSERT,
                (
                    command.command_id,
                    command.hub_id,
                    position,
                    command.type,
                    _json(command.payload),
                    queued_at,
                ),
            )

    def pending(self, hub_id: str) -> list[Command]:
        """The hub's unanswered commands, in the order they were queued."""
        with self._transaction() as execute:
            rows = execute(_PENDING, (hub_id,)).fetchall()
        return [_command(row) for row in rows]

    def get(self, command_id: str) -> Command | None:
        """A command by id, answered or not; None once unknown or pruned."""
        with self._transaction() as execute:
            row = execute(_BY_ID, (command_id,)).fetchone()
        return None if row is None else _command(row)

    def answer(
        self,
        hub_id: str,
        command_id: str,
        reply: dict[str, Any],
        answered_at: float,
        keep_answered: int,
    ) -> Command:
        """Record the hub's reply; return the command with it.

        The first reply stands: a reply posted again (a hub retrying after a lost
        response) changes nothing. A ``configure`` reply's ``active_version``
        becomes the hub's active configuration. Raises `KeyError` when the hub has
        no such command.
        """
        with self._transaction() as execute:
            row = execute(_BY_ID, (command_id,)).fetchone()
            command = None if row is None else _command(row)
            if command is None or command.hub_id != hub_id:
                raise KeyError(command_id)
            if command.reply is not None:
                logger.debug("hub %s answered command %s again", hub_id, command_id)
                return command

            execute(_RECORD_REPLY, (_json(reply), answered_at, command_id))
            active = reply.get("active_version")
            if command.type == "configure" and isinstance(active, str):
                execute(_RECORD_ACTIVE, (active, answered_at, hub_id))
            execute(_PRUNE_ANSWERED, (hub_id, hub_id, keep_answered))
        command.reply = reply
        return command

    def report_active(self, hub_id: str, version: str | None, reported_at: float) -> None:
        """Record the configuration version the hub says it runs (None: none)."""
        with self._transaction() as execute:
            execute(_REPORT_ACTIVE, (hub_id, version, reported_at))

    def active_config(self, hub_id: str) -> str | None:
        """The configuration version the hub last reported active."""
        with self._transaction() as execute:
            row = execute(_ACTIVE, (hub_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Execute]:
        with self._begin() as execute:
            if self._paramstyle == "qmark":
                yield execute
            else:
                yield lambda query, params: execute(query.replace("?", "%s"), params)


def _json(document: dict[str, Any]) -> str:
    # ASCII escapes: the stored text fits any database encoding, whatever it holds.
    return json.dumps(document, separators=(",", ":"))


def _command(row: Sequence[Any]) -> Command:
    command_id, hub_id, type_, payload, reply = row
    answer = None if reply is None else json.loads(reply)
    return Command(str(command_id), str(hub_id), str(type_), json.loads(payload), answer)
