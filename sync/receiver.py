"""The reference city receiver: takes signed batches from hubs and stores them once.

Routes (see docs/sync-protocol.md):

* ``POST /v1/hubs/{hub_id}/batches``: a signed, gzip-compressed batch; replies with
  each lane's high-water mark as the ack.
* ``GET /v1/hubs/{hub_id}/status``: signed; per-lane high-water marks and counts.
* ``GET /v1/hubs/{hub_id}/commands?wait=S``: signed long poll; the commands the
  city queued for the hub, held open up to S seconds (at most 60) until one comes.
* ``POST /v1/hubs/{hub_id}/commands/{command_id}/reply``: signed; the hub's answer.
* ``GET /healthz``: no auth.
* ``GET|POST /admin/faults``: loopback only, ``Authorization: Bearer <admin token>``;
  present only when an admin token is configured. Reads or sets the fault knobs.
* ``POST /admin/hubs/{hub_id}/commands`` and ``GET /admin/commands/{command_id}``:
  same guard; queue a command for a hub (a configuration bundle is signed here with
  the key the hub last signed with, else its newest) and read its reply. Commands are
  kept in the store, so they outlive a restart of the receiver (`sync.command_queue`).

Fault knobs, for tests and demos: ``fail_with_500`` (probability of replying 500
before storing), ``delay_seconds`` (wait before handling a batch), ``drop_ack``
(probability of storing a batch, then replying 500 as if the ack were lost) and
``reject_event_ids`` (refuse with 422 any batch carrying one of these event ids).

Run it as ``python -m sync.receiver --db city.db --keys keys.json --port 8765``, or
with ``--dsn`` for PostgreSQL. ``GET /admin/hubs`` lists hubs and which are silent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.clock import Clock, SystemClock
from hub.errors import ConfigError
from hub.events import Lane
from sync.city_config import VERSION_PATTERN, sign_bundle
from sync.city_store import BatchStore, LaneUpload, SQLiteBatchStore
from sync.command_queue import MAX_WAIT_SECONDS, CommandQueue
from sync.errors import (
    AuthError,
    BatchError,
    CommandQueueFull,
    NonceCacheFull,
    StoreUnavailable,
)
from sync.keys import HubKey, KeysFile, newest_first
from sync.signing import RequestVerifier
from sync.silence import DEFAULT_SILENT_AFTER, SilenceWatch
from sync.tls import ServerTls

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
ADMIN_TOKEN_ENV = "HALLHUB_RECEIVER_ADMIN_TOKEN"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_INFLATED_BYTES = 64 * 1024 * 1024
MAX_EVENTS_PER_BATCH = 10_000
MAX_DELAY_SECONDS = 600.0


class BatchBody(BaseModel):
    """The decoded body of ``POST /v1/hubs/{hub_id}/batches``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    hub_id: str
    epoch: int = Field(ge=1)
    lanes: dict[Lane, LaneUpload]


class FaultUpdate(BaseModel):
    """The body of ``POST /admin/faults``: the knobs to change."""

    model_config = ConfigDict(extra="forbid")

    fail_with_500: float | None = None
    delay_seconds: float | None = None
    drop_ack: float | None = None
    reject_event_ids: list[str] | None = None


@dataclass(slots=True)
class Faults:
    """Failures the receiver injects on purpose."""

    fail_with_500: float = 0.0
    delay_seconds: float = 0.0
    drop_ack: float = 0.0
    reject_event_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("fail_with_500", "drop_ack"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if not 0.0 <= self.delay_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"delay_seconds must be between 0 and {MAX_DELAY_SECONDS:.0f}")


class HttpProblem(Exception):
    """A request refused with an HTTP status, an error code and a detail."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(f"{status} {error}: {detail}")


@dataclass(slots=True)
class ReceiverState:
    """What the routes share."""

    store: BatchStore
    verifier: RequestVerifier
    clock: Clock
    faults: Faults
    admin_token: str | None
    rng: random.Random
    commands: CommandQueue
    keys_file: KeysFile | None = None
    closing: Callable[[], bool] = lambda: False
    silence: SilenceWatch | None = None
    # Per hub, the key it last signed a request with: a key it is known to hold.
    keys_in_use: dict[str, str] = field(default_factory=dict)


def create_app(
    store: BatchStore,
    keys: Mapping[str, HubKey] | KeysFile,
    *,
    clock: Clock | None = None,
    faults: Faults | None = None,
    admin_token: str | None = None,
    rng: random.Random | None = None,
    silent_after: float = DEFAULT_SILENT_AFTER,
) -> Starlette:
    """The receiver as an ASGI app; `app.state.receiver` holds its `ReceiverState`.

    Given a `KeysFile`, the receiver reads it again whenever it changes, so hub
    keys can be added and retired without a restart.
    """
    keys_file = keys if isinstance(keys, KeysFile) else None
    initial = keys.keys() if isinstance(keys, KeysFile) else keys
    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/v1/hubs/{hub_id}/batches", _post_batch, methods=["POST"]),
        Route("/v1/hubs/{hub_id}/status", _get_status, methods=["GET"]),
        Route("/v1/hubs/{hub_id}/commands", _poll_commands, methods=["GET"]),
        Route("/v1/hubs/{hub_id}/commands/{command_id}/reply", _post_reply, methods=["POST"]),
        Route("/v1/hubs/{hub_id}/configuration", _put_configuration, methods=["PUT"]),
    ]
    if admin_token:
        routes += [
            Route("/admin/faults", _faults, methods=["GET", "POST"]),
            Route("/admin/hubs/{hub_id}/commands", _queue_command, methods=["POST"]),
            Route("/admin/commands/{command_id}", _get_command, methods=["GET"]),
            Route("/admin/hubs", _list_hubs, methods=["GET"]),
        ]

    app = Starlette(routes=routes, exception_handlers={HttpProblem: _problem_reply})
    clock = clock or SystemClock()
    app.state.receiver = ReceiverState(
        store=store,
        verifier=RequestVerifier(initial),
        clock=clock,
        faults=faults or Faults(),
        admin_token=admin_token,
        rng=rng or random.Random(),
        commands=CommandQueue(store.commands, clock),
        keys_file=keys_file,
    )
    state: ReceiverState = app.state.receiver
    state.silence = SilenceWatch(
        lambda: {key.hub_id for key in state.verifier.keys().values()},
        state.clock,
        silent_after,
        store.last_contact(),
    )
    return app


# -- routes ----------------------------------------------------------------------


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _post_batch(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    hub_id = request.path_params["hub_id"]
    body = await _read_body(request)
    _authenticate(request, state, hub_id, body)

    await _inject_delay_or_failure(state)
    batch = _decode_batch(hub_id, body, request.headers.get("content-encoding", ""))
    _refuse_chosen_events(state.faults, batch)
    now = state.clock.wall()
    try:
        outcomes = await run_in_threadpool(
            state.store.apply_batch, hub_id, batch.epoch, batch.lanes, now
        )
    except BatchError as exc:
        # Content the store cannot hold: refused as content, so the hub isolates it.
        logger.warning("batch from %s refused by the store: %s", hub_id, exc)
        raise HttpProblem(422, "unstorable", str(exc)[:500]) from exc

    _log_outcomes(hub_id, batch.epoch, outcomes)
    if state.faults.drop_ack and state.rng.random() < state.faults.drop_ack:
        logger.info("fault drop_ack: batch from %s stored, replying 500", hub_id)
        raise HttpProblem(500, "injected_failure", "drop_ack")
    acks = {lane.value: outcome.hwm for lane, outcome in outcomes.items()}
    return JSONResponse({"acks": acks, "server_time": state.clock.wall()})


async def _get_status(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    hub_id = request.path_params["hub_id"]
    body = await _read_body(request)
    _authenticate(request, state, hub_id, body)

    status = await run_in_threadpool(state.store.hub_status, hub_id)
    active = await state.commands.active_config(hub_id)
    return JSONResponse({**status, "active_config": active, "server_time": state.clock.wall()})


async def _poll_commands(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    hub_id = request.path_params["hub_id"]
    _authenticate(request, state, hub_id, await _read_body(request))

    try:
        wait = float(request.query_params.get("wait", "0"))
    except ValueError as exc:
        raise HttpProblem(400, "bad_wait", "wait must be seconds") from exc
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise HttpProblem(400, "bad_wait", f"wait must be 0 to {MAX_WAIT_SECONDS:.0f} seconds")

    async def give_up() -> bool:
        return state.closing() or await request.is_disconnected()

    commands = await state.commands.wait_for(hub_id, wait, give_up)
    reply = {"commands": [c.to_wire() for c in commands], "server_time": state.clock.wall()}
    return JSONResponse(reply)


async def _post_reply(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    hub_id = request.path_params["hub_id"]
    body = await _read_body(request)
    _authenticate(request, state, hub_id, body)

    answer = _json_object(body, "bad_reply")
    try:
        await state.commands.answer(hub_id, request.path_params["command_id"], answer)
    except KeyError as exc:
        raise HttpProblem(404, "no_command", "no such command for this hub") from exc
    return JSONResponse({"status": "recorded", "server_time": state.clock.wall()})


async def _put_configuration(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    hub_id = request.path_params["hub_id"]
    body = await _read_body(request)
    _authenticate(request, state, hub_id, body)

    version = _json_object(body, "bad_configuration").get("active_version")
    if version is not None and not (
        isinstance(version, str) and VERSION_PATTERN.fullmatch(version)
    ):
        raise HttpProblem(400, "bad_configuration", "active_version must be a version or null")
    await state.commands.report_active(hub_id, version)
    return JSONResponse({"active_config": version, "server_time": state.clock.wall()})


async def _queue_command(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    _check_admin(request, state)
    hub_id = request.path_params["hub_id"]

    document = _json_object(await request.body(), "bad_command")
    type_, payload = document.get("type"), document.get("payload", {})
    if not isinstance(type_, str) or not isinstance(payload, dict):
        raise HttpProblem(400, "bad_command", "need a type and a payload mapping")
    if type_ == "configure":
        payload = _signed_bundle(state, hub_id, payload)
    try:
        command = await state.commands.enqueue(hub_id, type_, payload)
    except (ValueError, CommandQueueFull) as exc:
        raise HttpProblem(400, "bad_command", str(exc)) from exc
    return JSONResponse({"command_id": command.command_id}, status_code=202)


async def _get_command(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    _check_admin(request, state)

    command = await state.commands.get(request.path_params["command_id"])
    if command is None:
        raise HttpProblem(404, "no_command", "no such command")
    return JSONResponse(
        {
            **command.to_wire(),
            "hub_id": command.hub_id,
            "state": "pending" if command.reply is None else "answered",
            "reply": command.reply,
        }
    )


async def _faults(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    _check_admin(request, state)

    if request.method == "POST":
        state.faults = _updated_faults(state.faults, await request.body())
        logger.info("faults set: %s", asdict(state.faults))
    return JSONResponse(asdict(state.faults))


async def _list_hubs(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    _check_admin(request, state)

    hubs = state.silence.check() if state.silence is not None else []
    return JSONResponse({"hubs": hubs, "server_time": state.clock.wall()})


async def _problem_reply(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpProblem)
    state: ReceiverState = request.app.state.receiver
    reply = {"error": exc.error, "detail": exc.detail, "server_time": state.clock.wall()}
    return JSONResponse(reply, status_code=exc.status)


# -- steps -----------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HttpProblem(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _authenticate(request: Request, state: ReceiverState, hub_id: str, body: bytes) -> None:
    # The signature covers the path exactly as sent, before any percent-decoding.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = bytes(raw_path).split(b"?", 1)[0].decode("ascii", errors="replace")
    if state.keys_file is not None:
        state.verifier.replace_keys(state.keys_file.keys())
    try:
        key = state.verifier.verify(
            request.method, path, body, request.headers.get("authorization"), state.clock.wall()
        )
    except AuthError as exc:
        logger.warning("refused %s %s: %s", request.method, path, exc.reason)
        raise HttpProblem(401, exc.reason, exc.detail) from exc
    except NonceCacheFull as exc:
        logger.error("refused %s %s: %s", request.method, path, exc)
        raise HttpProblem(503, "busy", str(exc)) from exc

    if key.hub_id != hub_id:
        logger.warning("key %s of hub %s used for hub %s", key.key_id, key.hub_id, hub_id)
        raise HttpProblem(403, "wrong_hub", f"key {key.key_id!r} is not for hub {hub_id!r}")
    state.keys_in_use[hub_id] = key.key_id
    if state.silence is not None:
        state.silence.contact(hub_id)


async def _inject_delay_or_failure(state: ReceiverState) -> None:
    faults = state.faults
    if faults.delay_seconds:
        await asyncio.sleep(faults.delay_seconds)
    if faults.fail_with_500 and state.rng.random() < faults.fail_with_500:
        raise HttpProblem(500, "injected_failure", "fail_with_500")


def _decode_batch(hub_id: str, body: bytes, encoding: str) -> BatchBody:
    raw = _inflate(body, encoding.strip().lower())
    try:
        batch = BatchBody.model_validate_json(raw)
        _check_batch(hub_id, batch)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10]]
        raise HttpProblem(400, "bad_batch", "; ".join(problems)) from exc
    except BatchError as exc:
        raise HttpProblem(400, "bad_batch", str(exc)) from exc
    return batch


def _refuse_chosen_events(faults: Faults, batch: BatchBody) -> None:
    if not faults.reject_event_ids:
        return
    chosen = set(faults.reject_event_ids)
    for upload in batch.lanes.values():
        for event in upload.events:
            if event.event_id in chosen:
                logger.info("fault reject_event_ids: refusing batch with %s", event.event_id)
                raise HttpProblem(422, "rejected_event", "batch holds an event the city refuses")


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HttpProblem(415, "bad_encoding", f"Content-Encoding {encoding!r} not supported")

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(body, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise HttpProblem(400, "bad_encoding", f"gzip body is corrupt: {exc}") from exc
    if inflater.unconsumed_tail:
        raise HttpProblem(413, "too_large", f"body inflates past {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise HttpProblem(400, "bad_encoding", "gzip body is truncated")
    return raw


def _check_batch(hub_id: str, batch: BatchBody) -> None:
    problems: list[str] = []
    if batch.hub_id != hub_id:
        problems.append(f"hub_id {batch.hub_id!r} differs from the path's {hub_id!r}")
    total = sum(len(u.events) + len(u.tombstones) for u in batch.lanes.values())
    if total > MAX_EVENTS_PER_BATCH:
        problems.append(f"{total} events; at most {MAX_EVENTS_PER_BATCH} per batch")
    for lane, upload in batch.lanes.items():
        for event in upload.events:
            if event.lane is not lane or event.hub_id != hub_id:
                problems.append(f"lanes.{lane.value}: event {event.event_id} is misfiled")
                break
    if problems:
        raise BatchError(problems)


def _log_outcomes(hub_id: str, epoch: int, outcomes: Mapping[Lane, Any]) -> None:
    for lane, outcome in outcomes.items():
        logger.debug(
            "hub %s epoch %d lane %s: +%d stored, +%d tombstones, %d repeats, %d duplicates,"
            " hwm %d",
            hub_id,
            epoch,
            lane.value,
            outcome.inserted,
            outcome.tombstoned,
            outcome.repeats,
            outcome.duplicates,
            outcome.hwm,
        )
        if outcome.gap_at is not None:
            logger.warning(
                "hub %s lane %s: gap, got seq %d after hwm %d",
                hub_id,
                lane.value,
                outcome.gap_at,
                outcome.hwm,
            )


def _json_object(body: bytes, error: str) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError as exc:
        raise HttpProblem(400, error, "body is not JSON") from exc
    if not isinstance(document, dict):
        raise HttpProblem(400, error, "body must be a JSON object")
    try:
        # Stored, then served again as UTF-8: an escaped lone surrogate has none.
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise HttpProblem(400, error, "body holds a lone surrogate, not Unicode text") from exc
    return document


def _signed_bundle(state: ReceiverState, hub_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    version, files = payload.get("version"), payload.get("files")
    if not isinstance(version, str) or not isinstance(files, dict):
        raise HttpProblem(400, "bad_command", "a configure payload needs version and files")
    if state.keys_file is not None:
        state.verifier.replace_keys(state.keys_file.keys())
    keys = newest_first(k for k in state.verifier.keys().values() if k.hub_id == hub_id)
    if not keys:
        raise HttpProblem(400, "bad_command", f"no key for hub {hub_id!r} to sign with")
    # While keys rotate the city holds the new key before the hub does: sign with the
    # key the hub last signed with, which it surely holds; the newest if it is unheard.
    in_use = [k for k in keys if k.key_id == state.keys_in_use.get(hub_id)]
    key = in_use[0] if in_use else keys[0]
    named = {str(name): str(text) for name, text in files.items()}
    return sign_bundle(key, version, named, state.clock.wall())


def _check_admin(request: Request, state: ReceiverState) -> None:
    client = request.client
    try:
        loopback = client is not None and ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HttpProblem(403, "not_loopback", "admin routes answer on loopback only")

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = state.admin_token or ""
    if scheme != "Bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HttpProblem(401, "bad_admin_token", "admin token missing or wrong")


def _updated_faults(current: Faults, body: bytes) -> Faults:
    try:
        update = FaultUpdate.model_validate_json(body or b"{}")
        changes = {name: value for name, value in update if value is not None}
        return Faults(**{**asdict(current), **changes})
    except (ValidationError, ValueError) as exc:
        raise HttpProblem(400, "bad_faults", str(exc).splitlines()[0]) from exc


# -- process ---------------------------------------------------------------------


def open_store(db_path: Path | None, dsn: str | None) -> BatchStore:
    """The SQLite store at `db_path`, or the PostgreSQL one at `dsn`."""
    if dsn is not None:
        from sync.pg_store import PostgresBatchStore

        return PostgresBatchStore(dsn)
    if db_path is None:
        raise ValueError("give --db FILE or --dsn DSN")
    return SQLiteBatchStore(db_path)


def run_receiver(
    db_path: Path | None,
    host: str,
    port: int,
    keys_path: Path,
    *,
    dsn: str | None = None,
    faults: Faults | None = None,
    admin_token: str | None = None,
    tls: ServerTls | None = None,
    silent_after: float = DEFAULT_SILENT_AFTER,
) -> None:
    """Serve the receiver with uvicorn until SIGTERM or SIGINT."""
    keys = KeysFile(keys_path)
    count = len(keys.keys())
    store = open_store(db_path, dsn)
    app = create_app(store, keys, faults=faults, admin_token=admin_token, silent_after=silent_after)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
        **(tls.uvicorn_options() if tls is not None else {}),  # type: ignore[arg-type]
    )

    server = uvicorn.Server(config)
    app.state.receiver.closing = lambda: server.should_exit
    scheme = "https" if tls is not None else "http"
    logger.info(
        "city receiver on %s://%s:%d, %d keys, store %s",
        scheme,
        host,
        port,
        count,
        "PostgreSQL" if dsn is not None else db_path,
    )
    watching = threading.Event()
    watch = threading.Thread(
        target=_watch_silence, args=(app.state.receiver, watching), name="silence", daemon=True
    )
    watch.start()
    try:
        with _signals_end_quietly():
            server.run()
    finally:
        watching.set()
        store.close()
    logger.info("city receiver stopped")


class BackgroundReceiver:
    """A receiver app served by uvicorn on a thread of this process (tests, demos).

    It listens on a socket the caller bound in advance, so a client can be pointed
    at the port before the receiver starts and see connections refused until then.
    """

    def __init__(self, app: Starlette, sock: socket.socket, tls: ServerTls | None = None) -> None:
        self._sock = sock
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            **(tls.uvicorn_options() if tls is not None else {}),  # type: ignore[arg-type]
        )
        self._server = uvicorn.Server(config)
        server = self._server
        app.state.receiver.closing = lambda: server.should_exit
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="city-receiver"
        )

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; return once the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("city receiver thread did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._sock.close()


def _watch_silence(state: ReceiverState, stop: threading.Event) -> None:
    """Check for silent hubs every 30 s, so the WARNING is logged without a request."""
    while not stop.wait(30.0):
        if state.silence is not None:
            state.silence.check()


@contextlib.contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """Let uvicorn's re-raised SIGTERM/SIGINT end `run_receiver` normally."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s", signal.Signals(signum).name)

    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.signal(signum, note) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m sync.receiver --db ... --port ... --keys ...``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        faults = Faults(
            args.fail_with_500, args.delay_seconds, args.drop_ack, args.reject_event or []
        )
        run_receiver(
            args.db,
            args.host,
            args.port,
            args.keys,
            dsn=args.dsn,
            silent_after=args.silent_minutes * 60.0,
            faults=faults,
            admin_token=os.environ.get(ADMIN_TOKEN_ENV) or None,
            tls=_server_tls(args),
        )
    except (ConfigError, ValueError, OSError, StoreUnavailable) as exc:
        sys.stderr.write(f"city-receiver: {exc}\n")
        return 2
    return 0


def _server_tls(args: argparse.Namespace) -> ServerTls | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.client_ca is not None:
            raise ValueError("--client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    return ServerTls(args.tls_cert, args.tls_key, args.client_ca)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="city-receiver",
        description="Reference city receiver for hallhub batches. The admin route "
        f"/admin/faults is enabled when {ADMIN_TOKEN_ENV} is set.",
    )
    store = parser.add_mutually_exclusive_group(required=True)
    store.add_argument("--db", type=Path, help="SQLite file for events")
    store.add_argument("--dsn", help="PostgreSQL connection string (libpq) instead of --db")
    parser.add_argument(
        "--silent-minutes",
        type=float,
        default=DEFAULT_SILENT_AFTER / 60,
        help="flag a hub silent after this many minutes without contact",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    parser.add_argument("--keys", type=Path, required=True, help="hub keys file (YAML/JSON)")
    parser.add_argument(
        "--fail-with-500",
        type=float,
        default=0.0,
        metavar="P",
        help="probability of failing a batch with 500 before storing",
    )
    parser.add_argument(
        "--delay-seconds", type=float, default=0.0, help="wait this long before handling each batch"
    )
    parser.add_argument(
        "--drop-ack",
        type=float,
        default=0.0,
        metavar="P",
        help="probability of storing a batch, then replying 500",
    )
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", type=Path, help="private key of --tls-cert")
    parser.add_argument(
        "--client-ca", type=Path, help="require client certificates signed by this CA (mTLS)"
    )
    parser.add_argument(
        "--reject-event",
        action="append",
        metavar="EVENT_ID",
        help="refuse with 422 any batch carrying this event id (repeatable)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
