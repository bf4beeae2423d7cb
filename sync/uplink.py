"""The uplink: sends the journal's unacknowledged events to the city, batch by batch.

One batch at a time: read up to `batch_size` pending events in lane priority, POST
them gzip-compressed and signed, and move each lane's ``acked_seq`` to what the
city says it holds. The journal keeps everything until then, so a crash or an
outage only delays events; the city deduplicates what is sent twice.

Failures:

* 5xx, timeout, refused connection: retried with capped, jittered exponential
  backoff. The outage is logged once at ERROR, repeats at DEBUG, recovery at INFO.
* 401 because the hub's clock is off: the hub learns the offset from the reply's
  ``server_time`` (or ``Date``) and re-signs at once.
* 401 ``unknown_key`` while keys rotate: the hub signs with its newest key; if the
  city does not know it yet, the same batch is signed again with the next older
  key, so a rotation loses no batch.
* 400, 413 or 422 (the city blames the batch's content): the batch is narrowed by
  bisection, sending ever shorter prefixes of it, until one event is refused on its
  own. That event is set aside (`sync.poison`: telemetry and health dead-lettered,
  alarms, ratings and tickets quarantined with an alert) and a tombstone takes its
  seq, so the rest keeps draining. After `MAX_SET_ASIDE_IN_A_ROW` events set aside
  with no event accepted in between, the uplink stops setting aside (a city that
  refuses everything must not empty the hub into quarantine) and retries slowly.
* Any other 4xx (a refused key, a wrong hub): logged at ERROR and retried slowly.
* 200 with an ack below the lane's base (a city restored from a backup holds less
  than it confirmed): the lane is moved back to that ack and sent again at once; a
  second such reply straight after counts as an outage (backoff, no loop).
"""

from __future__ import annotations

import asyncio
import enum
import gzip
import logging
import math
import random
import sqlite3
import ssl
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import pydantic_core

from hub.clock import Clock
from hub.errors import JournalError
from hub.events import LANE_ORDER, Event, Lane
from hub.journal import Journal
from sync.errors import CityError, CityRejected, CityUnavailable
from sync.keys import HubKey, newest_first
from sync.outbox import RETENTION_REASON, LaneBatch, Outbox
from sync.poison import SetAside
from sync.signing import sign_request

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
REQUEST_DEADLINE_SECONDS = 60.0
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
REJECTED_RETRY_SECONDS = 300.0
POLL_SECONDS = 5.0
CLOCK_ROUND_TRIP_SECONDS = 5.0  # longer replies are not used to learn the city's time
CONTENT_REJECTIONS = frozenset({400, 413, 422})
MAX_SET_ASIDE_IN_A_ROW = 10
_REASON_CHARS = 200


class LinkState(enum.StrEnum):
    """How the last attempt to reach the city went."""

    IDLE = "idle"
    OUTAGE = "outage"
    REJECTED = "rejected"


class Backoff:
    """Capped exponential delays, each jittered to between half and all of its step."""

    def __init__(self, initial: float, cap: float, rng: random.Random) -> None:
        self._initial = initial
        self._cap = cap
        self._rng = rng
        self._attempts = 0

    def next_delay(self) -> float:
        """The delay before the next retry."""
        step = min(self._cap, self._initial * 2.0**self._attempts)
        self._attempts = min(self._attempts + 1, 32)
        return step / 2 + self._rng.uniform(0, step / 2)

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._attempts = 0


SetAsideHook = Callable[[SetAside], Awaitable[None]]
KeySource = Callable[[], Sequence[HubKey]]


class Uplink:
    """Store-and-forward of journaled events to the city platform."""

    def __init__(
        self,
        journal: Journal,
        city_url: str,
        key_id: str,
        secret: bytes,
        clock: Clock,
        batch_size: int = 500,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        poll_seconds: float = POLL_SECONDS,
        proxy: str | None = None,
        rng: random.Random | None = None,
        on_set_aside: SetAsideHook | None = None,
        key_source: KeySource | None = None,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._journal = journal
        self._batch_url = f"{city_url.rstrip('/')}/v1/hubs/{quote(journal.hub_id, safe='')}/batches"
        fixed = (HubKey(key_id, journal.hub_id, secret),)
        self._key_source: KeySource = key_source or (lambda: fixed)
        # A callable is asked before each request (`tls.ReloadingClientTls.context`).
        self._ssl_source: Callable[[], ssl.SSLContext] | None = (
            ssl_context if callable(ssl_context) else None
        )
        self._ssl_context = None if callable(ssl_context) else ssl_context
        self._clock = clock
        self._batch_size = batch_size
        self._timeout = timeout
        self._poll_seconds = poll_seconds
        self._proxy = proxy

        self._outbox = Outbox(journal)
        self._backoff = Backoff(
            BACKOFF_INITIAL_SECONDS, BACKOFF_CAP_SECONDS, rng or random.Random()
        )
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = LinkState.IDLE
        self._failures = 0
        self._last_error: str | None = None
        self._clock_offset = 0.0
        self._on_set_aside = on_set_aside
        self._suspects: int | None = None
        self._prefetch: asyncio.Task[tuple[list[LaneBatch], bytes] | None] | None = None
        self._set_aside_in_a_row = 0

    async def __aenter__(self) -> Uplink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client; a later drain opens a new one."""
        await self._drop_prefetched()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- running -----------------------------------------------------------------

    async def run(self) -> None:
        """Send batches until cancelled, waiting for new events when none are pending."""
        self._loop = asyncio.get_running_loop()
        logger.info("uplink for hub %s started", self._journal.hub_id)
        try:
            while True:
                self._wakeup.clear()
                delay = await self._attempt()
                if delay is None:
                    await self._wait_for_events()
                else:
                    await self._clock.sleep(delay)
        finally:
            self._loop = None
            await self.aclose()
            logger.info("uplink for hub %s stopped", self._journal.hub_id)

    def notify(self, events: Sequence[Event] = ()) -> None:
        """Wake the uplink: new events were committed. Safe from any thread.

        Its signature fits `Journal.add_commit_listener`.
        """
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._wakeup.set)
        except RuntimeError:
            logger.debug("uplink loop closed; notification dropped")

    async def drain_once(self) -> int:
        """Send one batch of pending events; return how many seqs the city acknowledged.

        A batch refused for its content is narrowed within this call until a
        shorter one is acknowledged or one event is set aside (counted as 1).
        Raises `CityUnavailable` or `CityRejected` when the batch was not
        acknowledged; the error is also recorded on the batch's lanes.
        """
        async with self._lock:
            may_rewind = True
            while True:
                prepared = await self._take_prefetched()
                if prepared is None:
                    batches = await self._outbox.pending(self._next_batch_size())
                    if not batches:
                        return 0
                    prepared = (batches, _encode_batch(self._journal, batches))
                try:
                    acknowledged = await self._send(*prepared, may_rewind=may_rewind)
                except CityRejected as exc:
                    if not self._may_narrow(exc):
                        raise
                    if await self._narrow(prepared[0], exc):
                        return 1
                    continue
                if acknowledged is not None:
                    return acknowledged
                may_rewind = False  # send at once from where the city says it stands

    async def _send(self, batches: list[LaneBatch], body: bytes, *, may_rewind: bool) -> int | None:
        """Send a batch and record its acks; how many seqs were newly acknowledged.

        None when the city acknowledged a lane below the base it was sent: the lane
        was moved back to that ack (`_rewind`) and the caller sends again from there.
        """
        self._prefetch_after(batches)
        try:
            acks = _acks_from(await self._post_batch(body), batches)
        except CityError as exc:
            await self._drop_prefetched()
            await self._outbox.record_error([b.lane for b in batches], str(exc))
            raise

        bases = {batch.lane: batch.base for batch in batches}
        behind = {lane: ack for lane, ack in acks.items() if ack < bases[lane]}
        forward = {lane: ack for lane, ack in acks.items() if lane not in behind}
        counts = await self._outbox.record_acks(forward, self._clock.wall())
        acknowledged = sum(counts.values())
        self._note_acknowledged(batches, acknowledged)
        _warn_of_retention_holes(batches, forward)
        logger.debug("batch of %d seqs: %d acknowledged", _size(batches), acknowledged)
        if not behind:
            return acknowledged

        await self._rewind(behind, may_rewind=may_rewind)
        return None

    async def _rewind(self, behind: dict[Lane, int], *, may_rewind: bool) -> None:
        """Move lanes back to the city's lower ack, so what it lost is sent again.

        The read-ahead assumed the batch would be acknowledged in full: it is thrown
        away. A city that answers below base again right after the hub sent from its
        own ack contradicts itself (a broken city, not a restore): that is raised as
        an outage, so the uplink backs off instead of walking back batch by batch.
        """
        await self._drop_prefetched()
        self._suspects = None
        if not may_rewind:
            lanes = ", ".join(lane.value for lane in behind)
            message = f"city acknowledged below the base again right after a rewind ({lanes})"
            await self._outbox.record_error(behind, message)
            raise CityUnavailable(message)

        moved = await self._outbox.rewind(behind, self._clock.wall())
        for lane, (old, new) in moved.items():
            logger.warning(
                "lane %s: acked_seq moved back from %d to %d, the city holds less than it"
                " confirmed (restored from a backup?); sending again from there",
                lane.value,
                old,
                new,
            )

    # -- reading the next batch while this one travels ----------------------------

    def _prefetch_after(self, batches: list[LaneBatch]) -> None:
        """Read and encode the batch that follows if `batches` is fully acknowledged.

        It runs in a thread while the city stores the current batch, so the hub's
        work overlaps the city's. Not while narrowing a refused batch.
        """
        if self._suspects is not None or self._prefetch is not None:
            return
        bases = {batch.lane: batch.last_seq for batch in batches}

        def prepare() -> tuple[list[LaneBatch], bytes] | None:
            following = self._outbox.read_pending_after(bases, self._batch_size)
            return (following, _encode_batch(self._journal, following)) if following else None

        self._prefetch = asyncio.create_task(asyncio.to_thread(prepare), name="uplink-prefetch")

    async def _take_prefetched(self) -> tuple[list[LaneBatch], bytes] | None:
        """The prefetched batch, if it still starts where each lane's ack now stands."""
        task, self._prefetch = self._prefetch, None
        if task is None:
            return None
        try:
            prepared = await task
        except (sqlite3.Error, JournalError) as exc:
            logger.warning("reading ahead failed (%s); reading the batch again", exc)
            return None
        if prepared is None:
            return None
        states = self._outbox.lane_states()
        if any(batch.base != states[batch.lane].acked_seq for batch in prepared[0]):
            return None
        return prepared

    async def _drop_prefetched(self) -> None:
        task, self._prefetch = self._prefetch, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- narrowing a refused batch ------------------------------------------------

    def _next_batch_size(self) -> int:
        if self._suspects is None:
            return self._batch_size
        return max(1, self._suspects // 2)

    def _may_narrow(self, exc: CityRejected) -> bool:
        if exc.status not in CONTENT_REJECTIONS:
            return False
        if self._set_aside_in_a_row >= MAX_SET_ASIDE_IN_A_ROW:
            logger.error(
                "city refused %d events in a row; setting no more aside until one is accepted",
                self._set_aside_in_a_row,
            )
            return False
        return True

    async def _narrow(self, batches: list[LaneBatch], exc: CityRejected) -> bool:
        """Shrink the suspect window; set the one event aside once it is alone.

        Returns True when an event was set aside. Raises `exc` when a lone
        tombstone is refused: there is nothing left to set aside.
        """
        size = _size(batches)
        if size > 1:
            self._suspects = size
            logger.warning("city refused %d seqs (%s); narrowing", size, exc)
            return False

        (batch,) = batches
        if not batch.events:
            self._suspects = None
            raise exc
        event = batch.events[0]
        record = await self._outbox.set_aside(event, str(exc), self._clock.wall())
        self._suspects = None
        self._set_aside_in_a_row += 1
        logger.warning(
            "city refused event %s (lane %s, seq %d): %s; %s",
            event.event_id,
            event.lane.value,
            event.seq,
            exc,
            record.disposition.value,
        )
        if self._on_set_aside is not None:
            await self._on_set_aside(record)
        return True

    def _note_acknowledged(self, batches: list[LaneBatch], acknowledged: int) -> None:
        if self._suspects is not None:
            remaining = self._suspects - acknowledged
            self._suspects = remaining if remaining > 0 else None
        if acknowledged and any(batch.events for batch in batches):
            self._set_aside_in_a_row = 0

    def status(self) -> dict[str, dict[str, Any]]:
        """Per lane: backlog, acked_seq, last_ack_at, last_error."""
        backlog = self._outbox.backlog()
        states = self._outbox.lane_states()
        return {
            lane.value: {
                "backlog": backlog[lane],
                "acked_seq": states[lane].acked_seq,
                "last_ack_at": states[lane].last_ack_at,
                "last_error": states[lane].last_error,
            }
            for lane in LANE_ORDER
        }

    def link_status(self) -> dict[str, Any]:
        """The link as a whole: state, consecutive failures, last error, clock offset."""
        return {
            "state": self._state.value,
            "consecutive_failures": self._failures,
            "last_error": self._last_error,
            "clock_offset_seconds": round(self._clock_offset, 3),
        }

    # -- one attempt -------------------------------------------------------------

    async def _attempt(self) -> float | None:
        """Drain once; return the delay before the next try, or None to wait for events."""
        try:
            acknowledged = await self.drain_once()
        except (CityUnavailable, JournalError) as exc:
            self._note_failure(LinkState.OUTAGE, exc)
            return self._backoff.next_delay()
        except (httpx.HTTPError, sqlite3.Error) as exc:
            # A garbled reply (say, a proxy's broken gzip) or a failed journal read is
            # an outage like any other: the uplink must never stop for good.
            self._note_failure(LinkState.OUTAGE, exc)
            return self._backoff.next_delay()
        except CityRejected as exc:
            self._note_failure(LinkState.REJECTED, exc)
            return REJECTED_RETRY_SECONDS
        except Exception as exc:
            # Anything else is a fault of ours or a reply no one foresaw; the events
            # are safe in the journal, so log it in full and retry as after an outage.
            logger.exception("city sync attempt failed unexpectedly")
            self._note_failure(LinkState.OUTAGE, exc)
            return self._backoff.next_delay()

        self._note_success()
        return 0.0 if acknowledged > 0 else None

    async def _wait_for_events(self) -> None:
        wakeup = asyncio.create_task(self._wakeup.wait(), name="uplink-wakeup")
        poll = asyncio.create_task(self._clock.sleep(self._poll_seconds), name="uplink-poll")
        try:
            await asyncio.wait({wakeup, poll}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (wakeup, poll):
                task.cancel()
            await asyncio.gather(wakeup, poll, return_exceptions=True)

    def _note_failure(self, state: LinkState, exc: Exception) -> None:
        reason = str(exc)
        first = self._state is not state or self._last_error != reason
        self._failures += 1
        self._last_error = reason
        self._state = state

        if first:
            logger.error("city sync failing (%s): %s; retrying", state.value, reason)
        else:
            logger.debug("city sync still failing (attempt %d): %s", self._failures, reason)

    def _note_success(self) -> None:
        if self._state is not LinkState.IDLE:
            logger.info("city sync recovered after %d failed attempts", self._failures)
        self._state = LinkState.IDLE
        self._failures = 0
        self._last_error = None
        self._backoff.reset()

    # -- HTTP --------------------------------------------------------------------

    async def _post_batch(self, body: bytes) -> dict[str, Any]:
        """POST a batch signed with the newest key.

        On a clock-skew 401, learn the offset and send it once more; on an
        unknown-key 401, try the older keys in turn (a rotation in progress).
        """
        keys = self._signing_keys()
        response = await self._post(body, keys[0])
        if response.status_code == 401 and _error_code(response) == "clock_skew":
            logger.warning(
                "city refused our timestamp; clock offset now %+.1f s, re-signing",
                self._clock_offset,
            )
            response = await self._post(body, keys[0])
        for older in keys[1:]:
            if response.status_code != 401 or _error_code(response) != "unknown_key":
                break
            logger.warning("city does not know the newest key yet; signing with %s", older.key_id)
            response = await self._post(body, older)
        return _check_reply(response)

    def signing_keys(self) -> list[HubKey]:
        """This hub's keys, newest first (the first signs)."""
        return self._signing_keys()

    def authorization(self, key: HubKey, method: str, path: str, body: bytes) -> str:
        """An Authorization header on the city's clock as learned from its replies."""
        return sign_request(
            key.key_id, key.secret, method, path, body, self._clock.wall() + self._clock_offset
        )

    def learn_offset(self, response: httpx.Response, sent_at: float) -> None:
        """Take the city's time from a reply to a request sent at hub time `sent_at`."""
        self._learn_offset(response, sent_at)

    def _signing_keys(self) -> list[HubKey]:
        keys = newest_first(self._key_source())
        if not keys:
            raise CityRejected(401, "no signing key for this hub")
        return keys

    async def _post(self, body: bytes, key: HubKey) -> httpx.Response:
        await self._follow_tls_files()
        client = self._ensure_client()
        request = client.build_request(
            "POST",
            self._batch_url,
            content=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
        sent_at = self._clock.wall()
        request.headers["Authorization"] = sign_request(
            key.key_id, key.secret, "POST", path, body, sent_at + self._clock_offset
        )

        try:
            async with asyncio.timeout(REQUEST_DEADLINE_SECONDS):
                response = await client.send(request)
        except (httpx.TransportError, TimeoutError) as exc:
            raise CityUnavailable(_describe(exc)) from exc

        if response.status_code in (200, 401):
            self._learn_offset(response, sent_at)
        return response

    def _learn_offset(self, response: httpx.Response, sent_at: float) -> None:
        """The city's time minus ours, taken at the middle of the round trip.

        A long round trip (a long poll held open, a slow link) says little about when
        the city stamped its reply, so it teaches nothing.
        """
        received_at = self._clock.wall()
        server_time = _server_time(response)
        if server_time is None or received_at - sent_at > CLOCK_ROUND_TRIP_SECONDS:
            return
        self._clock_offset = server_time - (sent_at + received_at) / 2

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context requests use now (None: plain HTTP or the system store)."""
        if self._ssl_source is not None:
            return self._ssl_source()
        return self._ssl_context

    async def _follow_tls_files(self) -> None:
        """Open a new client when the TLS files changed (a renewed certificate)."""
        if self._ssl_source is None:
            return
        context = self._ssl_source()
        if context is not self._ssl_context:
            self._ssl_context = context
            if self._client is not None:
                client, self._client = self._client, None
                await client.aclose()

    def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None:
            # No proxy from the environment: where batches go is explicit configuration.
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                trust_env=False,
                proxy=self._proxy,
                verify=self._ssl_context if self._ssl_context is not None else True,
            )
        return self._client


def _encode_batch(journal: Journal, batches: list[LaneBatch]) -> bytes:
    document = {
        "hub_id": journal.hub_id,
        "epoch": journal.epoch,
        "lanes": {batch.lane.value: _encode_lane(batch) for batch in batches},
    }
    # pydantic-core serialises in Rust, several times faster than json.dumps here;
    # level 6 costs half of level 9 for nearly the same size.
    raw = pydantic_core.to_json(document)
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _encode_lane(batch: LaneBatch) -> dict[str, Any]:
    lane: dict[str, Any] = {
        "base": batch.base,
        "events": [event.to_wire() for event in batch.events],
    }
    if batch.tombstones:
        lane["tombstones"] = [tombstone.to_wire() for tombstone in batch.tombstones]
    return lane


def _check_reply(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    if status >= 500:
        raise CityUnavailable(f"HTTP {status}: {_reason(response)}")
    if status != 200:
        raise CityRejected(status, _reason(response))
    try:
        reply = response.json()
    except ValueError as exc:
        raise CityUnavailable("reply is not JSON") from exc
    if not isinstance(reply, dict) or not isinstance(reply.get("acks"), dict):
        raise CityUnavailable("reply has no acks mapping")
    return reply


def _acks_from(reply: dict[str, Any], batches: list[LaneBatch]) -> dict[Lane, int]:
    """Each sent lane's ack, never beyond the last event sent in that lane."""
    acks: dict[Lane, int] = {}
    for batch in batches:
        value = reply["acks"].get(batch.lane.value, batch.base)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CityUnavailable(f"ack for lane {batch.lane.value} is not a seq: {value!r}")
        last_sent = batch.last_seq
        if value > last_sent:
            logger.debug("lane %s acked %d beyond %d sent", batch.lane, value, last_sent)
        acks[batch.lane] = min(value, last_sent)
    return acks


def _warn_of_retention_holes(batches: list[LaneBatch], acks: dict[Lane, int]) -> None:
    """Log, once acknowledged, each run of seqs sent as a tombstone because retention
    had deleted them before a restored city asked for them again."""
    for batch in batches:
        for tombstone in batch.tombstones:
            if tombstone.reason != RETENTION_REASON or acks.get(batch.lane, 0) < tombstone.last_seq:
                continue
            logger.warning(
                "lane %s seqs %d-%d were deleted by retention before the city asked for them"
                " again; the city was sent a compacted tombstone for them",
                batch.lane.value,
                tombstone.seq,
                tombstone.last_seq,
            )


def _server_time(response: httpx.Response) -> float | None:
    try:
        value = response.json().get("server_time")
    except (ValueError, AttributeError):
        value = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
        value = None  # NaN or Infinity (Python's json reads both): not a time

    date = response.headers.get("Date")
    if date is None:
        return None
    try:
        return parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None


def _error_field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _error_code(response: httpx.Response) -> str | None:
    return _error_field(response, "error")


def _reason(response: httpx.Response) -> str:
    code, detail = _error_code(response), _error_field(response, "detail")
    if code is not None:
        return f"{code}: {detail}"[:_REASON_CHARS] if detail else code
    return response.text[:_REASON_CHARS].strip() or response.reason_phrase


def _describe(exc: BaseException) -> str:
    detail = str(exc) or "no detail"
    return f"{type(exc).__name__}: {detail}"[:_REASON_CHARS]


def _size(batches: list[LaneBatch]) -> int:
    return sum(batch.size for batch in batches)
