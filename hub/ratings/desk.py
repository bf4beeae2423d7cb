"""The ratings desk: takes ratings in, chains them, opens follow-up tasks, sweeps.

Ratings come from the rating pads' events in the ``rating`` lane and from the API
(QR code, app, SMS). Each accepted rating is chained (`hub.ratings.chain`) in the
same transaction that checks it against its case, and then journaled in the
``rating`` lane as a ``rating_recorded`` event carrying its fields and chain link,
so the city can check the chain. That event's id derives from the link, so
journaling it again after a crash is a duplicate the journal keeps once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from hub import metrics
from hub.audit import AuditTrail
from hub.calendar import HallCalendar
from hub.clock import Clock
from hub.errors import JournalError
from hub.events import EVENT_ID_NAMESPACE, Event, Lane, Observation
from hub.journal import Journal, read_lane
from hub.ratings import store
from hub.ratings.chain import genesis, next_link
from hub.ratings.digests import digest_named
from hub.ratings.errors import ChainError, RatingRejected
from hub.ratings.levels import (
    BAD_LEVELS,
    CHANNELS,
    DEFAULT_LEVEL,
    DEFAULT_POLICY_CHANNEL,
    LEVELS,
    LevelCodes,
)
from hub.ratings.privacy import CitizenKeys
from hub.ratings.settings import RatingsSection
from hub.ratings.store import RatingInput
from hub.ratings.tasks import (
    RATINGS_SOURCE,
    AlertRaiser,
    Deadlines,
    FollowUpTasks,
    open_task,
)

logger = logging.getLogger(__name__)

RECORDED_TYPE = "rating_recorded"
PAD_KIND = "rating_pad"
PAD_TYPE = "rating"
CATCH_UP_PAGE = 1000
DAY_SECONDS = 86_400.0
RATINGS_HANDLED = Counter(
    "hallhub_ratings",
    "Ratings handled, by channel and outcome: recorded, or the reason it was refused.",
    ["channel", "outcome"],
    registry=metrics.REGISTRY,
)
JOURNAL_RETRY_FIRST = 0.5
JOURNAL_RETRY_CAP = 30.0


@dataclass(frozen=True)
class Refusal:
    """A refused rating, as the writer's transaction hands it back.

    Wrapped, because the journal raises any exception a unit of work returns.
    """

    error: RatingRejected


@dataclass(frozen=True)
class Recorded:
    """A rating accepted and chained, with the task it opened."""

    fields: dict[str, Any]
    previous: str
    link: str
    task_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {**self.fields, "link": self.link, "task_id": self.task_id}


def case_key_of(case_no: str | None, ticket: str | None, day: dt.date) -> str | None:
    """Which case a rating or case record is about: its case number, else the day's ticket.

    Ticket numbers restart every day, so a ticket alone names a case only with its date.
    """
    if case_no:
        return f"case:{case_no}"
    if ticket:
        return f"ticket:{day.isoformat()}:{ticket}"
    return None


class RatingDesk:
    """One hall's ratings: intake, chain, cases, follow-up tasks, sweeps."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        calendar: HallCalendar,
        alerts: AlertRaiser,
        audit: AuditTrail,
        settings: RatingsSection,
        state_dir: Path,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.calendar = calendar
        self.settings = settings
        self.codes = LevelCodes(settings.targets)
        self.digest = digest_named(settings.hash)
        self.tasks = FollowUpTasks(journal, clock, calendar, alerts, audit, settings)
        self._state_dir = state_dir
        self._citizens: CitizenKeys | None = None
        self._lock = asyncio.Lock()
        self._pads: asyncio.Queue[list[Event]] = asyncio.Queue()

    @property
    def citizens(self) -> CitizenKeys:
        if self._citizens is None:
            raise ChainError("the ratings desk is not started")
        return self._citizens

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Create the tables, check the chain's algorithm, journal what a crash left."""
        await self.journal.write(self._prepare)
        self._citizens = CitizenKeys.for_state_dir(self._state_dir, self.digest)
        await self._journal_unjournaled()
        loop = asyncio.get_running_loop()

        def hand_over(events: list[Event]) -> None:
            pads = [event for event in events if _is_pad_rating(event)]
            if pads:
                loop.call_soon_threadsafe(self._pads.put_nowait, pads)

        self.journal.add_commit_listener(hand_over)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        store.create_tables(conn)
        chosen = store.meta(conn, "hash")
        if chosen is None:
            store.set_meta(conn, "hash", self.digest.name)
        elif chosen != self.digest.name:
            raise ChainError(
                f"the rating chain uses {chosen}; ratings.hash says {self.digest.name}."
                " A chain keeps its algorithm: set ratings.hash back to it"
            )

    async def follow_pads(self) -> None:
        """Take pad ratings from the rating lane: first those a restart missed, then live."""
        handled = await self._catch_up_pads()
        while True:
            events = await self._pads.get()
            for event in events:
                if event.seq > handled:
                    await self._take_pad_rating(event)
                    handled = event.seq

    async def run_sweeps(self) -> None:
        """Every `check_interval` seconds: overdue tasks and the unrated policy."""
        while True:
            await self.clock.sleep(self.settings.check_interval)
            try:
                await self.sweep()
            except Exception:
                logger.exception("ratings sweep failed; trying again next interval")

    async def sweep(self) -> None:
        """One pass of the periodic checks."""
        await self.tasks.alert_overdue()
        await self.apply_unrated_policy()

    # -- intake ------------------------------------------------------------------

    async def record(self, rating: RatingInput, pad_seq: int | None = None) -> Recorded:
        """Check, chain and journal one rating; RatingRejected (kept) if it is refused."""
        rating = self._with_case_key(rating)
        deadlines = self.tasks.deadlines(rating.rated_at) if rating.level in BAD_LEVELS else None

        async with self._lock:
            outcome = await self.journal.write(
                lambda conn: self._chain_in(conn, rating, deadlines, pad_seq)
            )
            if isinstance(outcome, Refusal):
                refused = outcome.error
                logger.info("rating from %s refused: %s", rating.source, refused.reason)
                RATINGS_HANDLED.labels(rating.channel[:32], refused.reason).inc()
                raise refused
            await self._journal_recorded(outcome)
            RATINGS_HANDLED.labels(rating.channel, "recorded").inc()

        logger.info(
            "rating %d (%s) at window %s recorded",
            outcome.fields["rating_id"],
            rating.level,
            rating.window,
        )
        return outcome

    async def refuse(self, rating: RatingInput, reason: str, detail: str) -> RatingRejected:
        """Keep a rating refused before it could be checked (a malformed request)."""
        refusal = RatingRejected(reason, detail)
        await self.journal.write(
            lambda conn: store.keep_reject(conn, self.clock.wall(), rating, reason, detail)
        )
        logger.info("rating from %s refused: %s", rating.source, reason)
        RATINGS_HANDLED.labels(rating.channel[:32], reason).inc()
        return refusal

    def _with_case_key(self, rating: RatingInput) -> RatingInput:
        if rating.case_key is not None:
            return rating
        day = self.calendar.at_wall(rating.rated_at).date()
        return replace(rating, case_key=case_key_of(rating.case_no, rating.ticket, day))

    def _chain_in(
        self,
        conn: sqlite3.Connection,
        rating: RatingInput,
        deadlines: Deadlines | None,
        pad_seq: int | None,
    ) -> Recorded | Refusal:
        """Inside the writer's transaction: refuse a duplicate, or chain the rating."""
        if pad_seq is not None:
            store.set_meta(conn, "pad_seq", str(pad_seq))
        refusal = _bad_content(rating) or _duplicate(conn, rating)
        if refusal is not None:
            store.keep_reject(conn, self.clock.wall(), rating, refusal.reason, refusal.detail)
            return Refusal(refusal)

        last_id, last = store.last_link(conn)
        previous = last or genesis(self.digest, self.journal.hub_id)
        fields = _fields(last_id + 1, _filled_from_case(conn, rating))
        link = next_link(self.digest, previous, fields)
        store.insert_rating(conn, fields, link)
        task_id = open_task(conn, fields, deadlines, self.clock.wall())
        return Recorded(fields, previous, link, task_id)

    async def _journal_recorded(self, recorded: Recorded) -> None:
        """Journal the rating for the city, then note how far that has got."""
        fields = recorded.fields
        await self.journal.append(
            Observation(
                event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, f"rating\n{recorded.link}")),
                lane=Lane.RATING,
                # The hub's own event: under a pad's id it would count as the pad being seen.
                device_id=RATINGS_SOURCE,
                kind="rating",
                type=RECORDED_TYPE,
                data={
                    "rating": fields,
                    "chain": {
                        "index": fields["rating_id"],
                        "previous": recorded.previous,
                        "link": recorded.link,
                        "algorithm": self.digest.name,
                    },
                    "codes": self.codes.codes_for(fields["level"]),
                },
                received_at=self.clock.wall(),
                clock_synchronised=self.clock.is_synchronised(),
            )
        )
        await self.journal.write(
            lambda conn: store.set_meta(conn, "journaled_through", str(fields["rating_id"]))
        )

    async def _journal_unjournaled(self) -> None:
        """Journal ratings chained before a crash whose event never made it."""
        with self.journal.reading() as conn:
            through = int(store.meta(conn, "journaled_through") or 0)
            chain = store.chained_ratings(conn)
        previous = genesis(self.digest, self.journal.hub_id)
        for rating in chain:
            if rating.rating_id > through:
                await self._journal_recorded(
                    Recorded(dict(rating.fields), previous, rating.link, None)
                )
            previous = rating.link

    async def _catch_up_pads(self) -> int:
        with self.journal.reading() as conn:
            handled = int(store.meta(conn, "pad_seq") or 0)
        while True:
            with self.journal.reading() as conn:
                page = read_lane(conn, self.journal.hub_id, Lane.RATING, handled, CATCH_UP_PAGE)
            for event in page:
                if _is_pad_rating(event):
                    await self._take_pad_rating(event)
            if len(page) < CATCH_UP_PAGE:
                return page[-1].seq if page else handled
            handled = page[-1].seq

    async def _take_pad_rating(self, event: Event) -> None:
        data = event.data
        rating = RatingInput(
            window=str(data.get("window") or ""),
            level=str(data.get("level") or ""),
            channel="hall_pad",
            source=f"pad:{event.device_id}:{event.event_id}",
            rated_at=event.received_at,
            ticket=data.get("ticket"),
            case_no=data.get("case_no"),
            text=data.get("comment"),
        )
        delay = JOURNAL_RETRY_FIRST
        while True:
            try:
                await self.record(rating, pad_seq=event.seq)
                return
            except RatingRejected:
                return  # kept in rating_rejects with its reason, and logged
            except JournalError as exc:
                # A full or failing disk delays a pad rating; it never skips one.
                logger.error("pad rating %s waits for the journal: %s", event.event_id, exc)
                await self.clock.sleep(delay)
                delay = min(JOURNAL_RETRY_CAP, delay * 2)

    # -- cases -------------------------------------------------------------------

    async def record_case(
        self, window: str, staff_id: str | None, case_no: str | None, ticket: str | None
    ) -> dict[str, Any]:
        """A window finished a case: from now on it counts as unrated until rated."""
        now = self.clock.wall()
        key = case_key_of(case_no, ticket, self.calendar.at_wall(now).date())
        if key is None or not window:
            raise RatingRejected("no_case", "a case record needs a window and a case_no or ticket")
        row = (key, case_no, ticket, window, staff_id, now)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO rating_cases (case_key, case_no, ticket, window_id, staff_id,"
                " finished_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (case_key) DO NOTHING",
                row,
            )

        await self.journal.write(insert)
        return {"case_key": key, "window": window, "staff_id": staff_id, "finished_at": now}

    async def apply_unrated_policy(self) -> list[Recorded]:
        """Where switched on, count cases unrated for N days as 基本满意."""
        days = self.settings.unrated_counts_as_basic_after_days
        if days is None:
            return []
        with self.journal.reading() as conn:
            cases = store.unrated_cases(conn, self.clock.wall() - days * DAY_SECONDS)
        recorded: list[Recorded] = []
        for case in cases:
            rating = RatingInput(
                window=case["window_id"],
                level=DEFAULT_LEVEL,
                channel=DEFAULT_POLICY_CHANNEL,
                source=f"policy:{case['case_key']}",
                rated_at=self.clock.wall(),
                staff_id=case["staff_id"],
                ticket=case["ticket"],
                case_no=case["case_no"],
                case_key=case["case_key"],
            )
            recorded.append(await self.record(rating))
        return recorded


def _is_pad_rating(event: Event) -> bool:
    return event.lane is Lane.RATING and event.kind == PAD_KIND and event.type == PAD_TYPE


def _bad_content(rating: RatingInput) -> RatingRejected | None:
    if rating.level not in LEVELS:
        return RatingRejected("unknown_level", f"level must be one of {', '.join(LEVELS)}")
    if rating.channel not in (*CHANNELS, DEFAULT_POLICY_CHANNEL):
        return RatingRejected("unknown_channel", f"channel must be one of {', '.join(CHANNELS)}")
    if not rating.window:
        return RatingRejected("no_window", "a rating names the window that served the case")
    return None


def _duplicate(conn: sqlite3.Connection, rating: RatingInput) -> RatingRejected | None:
    """Why `rating` breaks one rating per case plus one follow-up, if it does."""
    if conn.execute("SELECT 1 FROM ratings WHERE source = ?", (rating.source,)).fetchone():
        return RatingRejected("repeated", f"{rating.source} is already recorded")
    if rating.case_key is None:
        if rating.follow_up:
            return RatingRejected("no_case", "a follow-up rating names its case or ticket")
        return None
    earlier = store.ratings_of_case(conn, rating.case_key)
    first = [rating_id for rating_id, follow_up in earlier if not follow_up]
    follow_ups = [rating_id for rating_id, follow_up in earlier if follow_up]
    if not rating.follow_up and first:
        return RatingRejected(
            "case_already_rated",
            f"{rating.case_key} was rated as rating {first[0]}; only one follow-up may follow",
        )
    if rating.follow_up and not first:
        return RatingRejected("no_first_rating", f"{rating.case_key} has no rating to follow up")
    if rating.follow_up and follow_ups:
        return RatingRejected(
            "follow_up_already_given",
            f"{rating.case_key} already has its follow-up rating {follow_ups[0]}",
        )
    return None


def _filled_from_case(conn: sqlite3.Connection, rating: RatingInput) -> RatingInput:
    """Staff id (and case number) from the case record, when the rating lacks them."""
    if rating.case_key is None:
        return rating
    case = store.case_record(conn, rating.case_key)
    if case is None:
        return rating
    return replace(
        rating,
        staff_id=rating.staff_id or case["staff_id"],
        case_no=rating.case_no or case["case_no"],
        ticket=rating.ticket or case["ticket"],
    )


def _fields(rating_id: int, rating: RatingInput) -> dict[str, Any]:
    return {
        "rating_id": rating_id,
        "case_key": rating.case_key,
        "case_no": rating.case_no,
        "ticket": rating.ticket,
        "window": rating.window,
        "staff_id": rating.staff_id,
        "channel": rating.channel,
        "level": rating.level,
        "tags": list(rating.tags),
        "text": rating.text,
        "follow_up": rating.follow_up,
        "rated_at": rating.rated_at,
        "citizen_key": rating.citizen_key,
        "source": rating.source,
    }
