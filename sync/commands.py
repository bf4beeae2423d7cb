"""The hub's end of the command channel: a long poll it holds open on the city.

The hub opens every connection (it sits behind NAT), so configuration coming down
and the city's queries ride on a signed long poll,
``GET /v1/hubs/{hub}/commands?wait=S``. Each command is handed to the handler for
its type and the answer POSTed to ``…/commands/{id}/reply``. An answer is kept
until the city has it, so a command given again after a lost reply is answered
again without being carried out twice.

Whenever the channel starts or recovers, it first tells the city which configuration
version the hub runs (``PUT …/configuration``): a version the hub rolled back at
start, or one the city lost in a restore, would otherwise show wrongly at the city
until the next push.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import sqlite3
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from hub.clock import Clock
from hub.errors import HallhubError
from hub.events import Lane
from hub.journal import Journal, read_lane
from sync.errors import CityRejected, CityUnavailable
from sync.uplink import BACKOFF_CAP_SECONDS, BACKOFF_INITIAL_SECONDS, Backoff, Uplink

logger = logging.getLogger(__name__)

WAIT_SECONDS = 25.0
MAX_EVENTS_PER_QUERY = 1000
MAX_SEQ = 2**63 - 1
REMEMBERED_ANSWERS = 256

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class CommandChannel:
    """Polls the city for commands and answers them, until cancelled."""

    def __init__(
        self,
        uplink: Uplink,
        city_url: str,
        hub_id: str,
        handlers: Mapping[str, Handler],
        clock: Clock,
        *,
        active_config: Callable[[], str | None] | None = None,
        wait_seconds: float = WAIT_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        hub_url = f"{city_url.rstrip('/')}/v1/hubs/{quote(hub_id, safe='')}"
        self._base = f"{hub_url}/commands"
        self._configuration_url = f"{hub_url}/configuration"
        self._active_config = active_config
        self._reported = False
        self._uplink = uplink
        self._handlers = dict(handlers)
        self._clock = clock
        self._wait = wait_seconds
        # Without a context of its own, the channel follows the uplink's (which
        # follows the TLS files, so a renewed certificate is used here too).
        self._fixed_tls = ssl_context
        self._tls_in_use: ssl.SSLContext | None = None
        self._backoff = Backoff(
            BACKOFF_INITIAL_SECONDS, BACKOFF_CAP_SECONDS, rng or random.Random()
        )
        self._answers: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._client: httpx.AsyncClient | None = None
        self._failing = False

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self) -> None:
        """Poll, answer, poll again; back off while the city cannot be reached."""
        logger.info("command channel to %s started", self._base)
        try:
            while True:
                try:
                    if not self._reported:
                        await self.report_configuration()
                    await self.poll_once()
                except (CityUnavailable, CityRejected) as exc:
                    self._note_failure(exc)
                    self._reported = False
                    await self._clock.sleep(self._backoff.next_delay())
                    continue
                self._note_success()
        finally:
            await self.aclose()

    async def report_configuration(self) -> None:
        """Tell the city which configuration version this hub runs now."""
        if self._active_config is None:
            return
        version = self._active_config()
        body = _json_bytes({"active_version": version})
        await self._signed("PUT", self._configuration_url, body)
        self._reported = True
        logger.info("told the city this hub runs configuration %s", version or "(none)")

    async def poll_once(self, wait: float | None = None) -> int:
        """One long poll; answer every command it brings. Returns how many came."""
        seconds = self._wait if wait is None else wait
        reply = await self._signed("GET", self._base, b"", {"wait": f"{seconds:g}"}, seconds)
        commands = reply.get("commands")
        if not isinstance(commands, list):
            raise CityUnavailable("command poll reply has no commands list")

        for command in commands:
            if isinstance(command, dict) and isinstance(command.get("command_id"), str):
                await self._answer(command)
        return len(commands)

    # -- steps -------------------------------------------------------------------

    async def _answer(self, command: dict[str, Any]) -> None:
        command_id = command["command_id"]
        answer = self._answers.get(command_id)
        if answer is None:
            answer = await self._carry_out(command)
            self._answers[command_id] = answer
            while len(self._answers) > REMEMBERED_ANSWERS:
                self._answers.popitem(last=False)

        body = _json_bytes(answer)
        await self._signed("POST", f"{self._base}/{quote(command_id, safe='')}/reply", body)

    async def _carry_out(self, command: dict[str, Any]) -> dict[str, Any]:
        type_ = str(command.get("type"))
        payload = command.get("payload")
        handler = self._handlers.get(type_)
        if handler is None or not isinstance(payload, dict):
            logger.warning("command %s of type %r not supported", command["command_id"], type_)
            return {"status": "unsupported", "type": type_}
        logger.info("carrying out command %s (%s)", command["command_id"], type_)
        try:
            return await handler(payload)
        except (HallhubError, OSError, sqlite3.Error) as exc:
            # The city is told, and the channel stays up for the next command.
            logger.warning("command %s failed: %s", command["command_id"], exc)
            return {"status": "failed", "problems": [str(exc)]}
        except Exception as exc:
            # A fault of the hub's own: a city command must never end the channel, or
            # the command, given again while pending, would end it at every start.
            logger.exception("command %s failed unexpectedly", command["command_id"])
            return {"status": "failed", "problems": [f"{type(exc).__name__}: {exc}"]}

    async def _signed(
        self,
        method: str,
        url: str,
        body: bytes,
        params: dict[str, str] | None = None,
        wait: float = 0.0,
    ) -> dict[str, Any]:
        client = await self._ensure_client()
        keys = self._uplink.signing_keys()
        response: httpx.Response | None = None
        for key in keys:
            request = client.build_request(
                method,
                url,
                content=body,
                params=params,
                headers={"Content-Type": "application/json"},
                timeout=httpx.Timeout(10.0, read=wait + 15.0),
            )
            path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
            sent_at = self._clock.wall()
            request.headers["Authorization"] = self._uplink.authorization(key, method, path, body)
            try:
                response = await client.send(request)
            except httpx.HTTPError as exc:
                raise CityUnavailable(f"{type(exc).__name__}: {exc}") from exc
            self._uplink.learn_offset(response, sent_at)
            if response.status_code != 401 or _error(response) != "unknown_key":
                break
        assert response is not None
        return _checked(response)

    async def _ensure_client(self) -> httpx.AsyncClient:
        context = self._fixed_tls or self._uplink.tls_context()
        if self._client is not None and context is not self._tls_in_use:
            client, self._client = self._client, None
            await client.aclose()
        if self._client is None:
            self._tls_in_use = context
            verify = context if context is not None else True
            self._client = httpx.AsyncClient(trust_env=False, verify=verify)
        return self._client

    def _note_failure(self, exc: Exception) -> None:
        if not self._failing:
            logger.error("command channel failing: %s; retrying", exc)
        else:
            logger.debug("command channel still failing: %s", exc)
        self._failing = True

    def _note_success(self) -> None:
        if self._failing:
            logger.info("command channel recovered")
        self._failing = False
        self._backoff.reset()


async def events_after(journal: Journal, payload: dict[str, Any]) -> dict[str, Any]:
    """The `query_events` answer: a lane's events after a seq, at most 1000."""
    try:
        lane = Lane(str(payload.get("lane")))
        after_seq = int(payload.get("after_seq", 0))
        limit = min(int(payload.get("limit", 100)), MAX_EVENTS_PER_QUERY)
    except (ValueError, TypeError, OverflowError) as exc:
        return {"status": "failed", "problems": [f"bad query: {exc}"]}
    # SQLite holds 64-bit integers and reads LIMIT -1 as "no limit".
    if not 0 <= after_seq <= MAX_SEQ:
        return {"status": "failed", "problems": [f"bad query: after_seq must be 0 to {MAX_SEQ}"]}
    if limit < 1:
        return {"status": "failed", "problems": ["bad query: limit must be at least 1"]}

    def read() -> list[dict[str, Any]]:
        with journal.reading() as conn:
            return [
                event.to_wire() for event in read_lane(conn, journal.hub_id, lane, after_seq, limit)
            ]

    events = await asyncio.to_thread(read)
    return {"status": "ok", "lane": lane.value, "after_seq": after_seq, "events": events}


def _json_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _error(response: httpx.Response) -> str | None:
    try:
        value = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _checked(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    if status >= 500:
        raise CityUnavailable(f"HTTP {status}")
    if status >= 300:
        raise CityRejected(status, _error(response) or response.reason_phrase)
    try:
        document = response.json()
    except ValueError as exc:
        raise CityUnavailable("reply is not JSON") from exc
    if not isinstance(document, dict):
        raise CityUnavailable("reply is not a JSON object")
    return document
