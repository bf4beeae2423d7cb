"""The receiver's check of each hub's rating hash chain.

Every ``rating_recorded`` event carries a rating, its chain index, the link before
it and its own link (`hub.ratings.chain`). The receiver keeps every link it has
seen per hub, so a chain rewritten on the hub shows at the next sync even when the
hub's own chain is consistent again:

* the link must be the hash of the previous link and the rating (``link_mismatch``);
* the previous link must be the one the receiver holds for the index before
  (``previous_mismatch``: ratings before this one were rewritten and the chain
  recomputed);
* an index already held must come with the same link (``index_rewritten``).

A break is recorded and logged, never a reason to refuse the batch: the events are
the evidence and are stored like any other. Both stores use this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.events import Lane
from hub.ratings.chain import next_link
from hub.ratings.digests import digest_named
from hub.ratings.errors import ChainError

if TYPE_CHECKING:
    from sync.city_store import WireEvent

logger = logging.getLogger(__name__)

MAX_INDEX = 2**63 - 1  # what both city databases can hold

RECORDED_TYPE = "rating_recorded"
RECENT_BREAKS = 20


@dataclass(frozen=True, slots=True)
class SeenLink:
    """A chain link as the receiver keeps it."""

    index: int
    link: str
    event_id: str


@dataclass(frozen=True, slots=True)
class ChainBreakSeen:
    """A rating event that does not fit the chain the receiver holds for its hub."""

    index: int
    event_id: str
    problem: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What a batch adds: links to keep and breaks to record."""

    links: list[SeenLink]
    breaks: list[ChainBreakSeen]


def check_rating_chain(
    hub_id: str, events: Iterable[WireEvent], link_at: Callable[[int], str | None]
) -> ChainCheck:
    """Check a batch's rating events in seq order against the links already held."""
    fresh: dict[int, str] = {}
    links: list[SeenLink] = []
    breaks: list[ChainBreakSeen] = []
    for event in events:
        if event.lane is not Lane.RATING or event.type != RECORDED_TYPE:
            continue
        index, link, problems = _check_one(event, lambda i: fresh.get(i) or link_at(i))
        for problem, detail in problems:
            logger.warning("hub %s rating chain at %d: %s: %s", hub_id, index, problem, detail)
            breaks.append(ChainBreakSeen(index, event.event_id, problem, detail))
        if index < 1:
            continue  # unreadable: nothing to keep as a link
        if index not in fresh and link_at(index) is None:
            fresh[index] = link
            links.append(SeenLink(index, link, event.event_id))
    return ChainCheck(links, breaks)


def _check_one(
    event: WireEvent, link_at: Callable[[int], str | None]
) -> tuple[int, str, list[tuple[str, str]]]:
    chain, rating = event.data.get("chain"), event.data.get("rating")
    try:
        if not isinstance(chain, dict) or not isinstance(rating, dict):
            raise ValueError("chain and rating must be objects")
        index, previous, link = int(chain["index"]), str(chain["previous"]), str(chain["link"])
        if not 1 <= index <= MAX_INDEX:
            raise ValueError(f"chain index {index} out of range")
        digest = digest_named(str(chain.get("algorithm", "sha256")))
        recomputed = next_link(digest, previous, rating)
    except (KeyError, TypeError, ValueError, ChainError) as exc:
        return -1, "", [("unreadable", f"event {event.event_id}: {exc}")]

    problems: list[tuple[str, str]] = []
    if recomputed != link or rating.get("rating_id") != index:
        problems.append(("link_mismatch", f"rating {index} does not hash to its link"))
    held_before = link_at(index - 1) if index > 1 else None
    if held_before is not None and held_before != previous:
        problems.append(
            (
                "previous_mismatch",
                f"rating {index} follows a link the city never saw at {index - 1}",
            )
        )
    held = link_at(index)
    if held is not None and held != link:
        problems.append(("index_rewritten", f"rating {index} came again with another link"))
    return index, link, problems


def chain_status(
    head: tuple[int, str] | None, break_count: int, recent: Iterable[Any]
) -> dict[str, Any]:
    """The rating chain part of a hub's status, as both stores report it."""
    return {
        "head_index": head[0] if head else 0,
        "head_link": head[1] if head else None,
        "breaks": break_count,
        "recent_breaks": [
            dict(zip(("chain_index", "event_id", "problem", "detail", "seen_at"), row, strict=True))
            for row in recent
        ],
    }
