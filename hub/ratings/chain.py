"""The rating hash chain: each rating's link seals it and every rating before it.

link(n) = H(link(n-1) || canonical(rating n)), with link(0) a genesis value drawn
from the hub id, so two hubs' chains never share a link. The canonical form is the
rating's fields as JSON with sorted keys, no spaces, UTF-8: the same bytes on the
hub and at the city, which recomputes links from the event data it receives.

`find_breaks` walks a stored chain and names what was edited, deleted or moved.
It only reads; this module knows nothing of SQLite or of the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.ratings.digests import Digest

# Above this many mismatched ratings, telling moved from edited costs too much hashing.
MOVE_SEARCH_LIMIT = 64


def canonical(rating: Mapping[str, Any]) -> bytes:
    """The bytes a rating's link is computed over."""
    text = json.dumps(rating, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def genesis(digest: Digest, hub_id: str) -> str:
    """The link before a hub's first rating."""
    return digest.hash(f"hallhub ratings chain\n{hub_id}".encode()).hex()


def next_link(digest: Digest, previous: str, rating: Mapping[str, Any]) -> str:
    """The link sealing `rating` after the link `previous` (both hex)."""
    return digest.hash(bytes.fromhex(previous) + canonical(rating)).hex()


@dataclass(frozen=True)
class ChainedRating:
    """One stored rating: its position, its fields and the link stored with it."""

    rating_id: int
    fields: Mapping[str, Any]
    link: str


@dataclass(frozen=True)
class ChainBreak:
    """A rating the chain shows was tampered with."""

    rating_id: int
    problem: str  # edited, deleted, moved, relinked
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"rating_id": self.rating_id, "problem": self.problem, "detail": self.detail}


def find_breaks(
    digest: Digest,
    hub_id: str,
    chain: Sequence[ChainedRating],
    journaled: Mapping[int, str] | None = None,
) -> list[ChainBreak]:
    """Every break in `chain` (ordered by rating id), each naming a rating.

    `journaled` maps rating ids to the links the hub journaled for the city when
    each rating was recorded: a rating missing from the end of the chain, or a
    chain recomputed after an edit, shows against them.
    """
    breaks: list[ChainBreak] = []
    previous = genesis(digest, hub_id)
    expected_id = 1
    mismatched: list[int] = []
    for index, rating in enumerate(chain):
        if rating.rating_id != expected_id:
            breaks += _deleted(expected_id, rating.rating_id)
        elif next_link(digest, previous, rating.fields) != rating.link:
            mismatched.append(index)
        expected_id = rating.rating_id + 1
        previous = rating.link
    breaks += _edited_or_moved(digest, hub_id, chain, mismatched)
    named = {found.rating_id for found in breaks}
    unexplained = [rating for rating in chain if rating.rating_id not in named]
    breaks += _against_journal(unexplained, journaled or {}, expected_id)
    return sorted(breaks, key=lambda found: (found.rating_id, found.problem))


def _deleted(first: int, after: int) -> list[ChainBreak]:
    return [
        ChainBreak(missing, "deleted", f"rating {missing} is missing from the chain")
        for missing in range(first, after)
    ]


def _edited_or_moved(
    digest: Digest, hub_id: str, chain: Sequence[ChainedRating], mismatched: list[int]
) -> list[ChainBreak]:
    """Name each rating whose content no longer matches its link.

    A rating whose content matches the link of another mismatched position was
    moved there from that position (rows reordered); any other was edited.
    """
    found: list[ChainBreak] = []
    for index in mismatched:
        rating = chain[index]
        if _follows_a_moved_rating(digest, hub_id, chain, mismatched, index):
            continue
        origin = _original_position(digest, hub_id, chain, mismatched, index)
        if origin is None:
            detail = f"rating {rating.rating_id}: its content does not match its link (edited)"
            found.append(ChainBreak(rating.rating_id, "edited", detail))
        else:
            detail = f"rating {rating.rating_id} holds the rating recorded as {origin} (reordered)"
            found.append(ChainBreak(rating.rating_id, "moved", detail))
    return found


def _candidate_previous_links(
    digest: Digest, hub_id: str, chain: Sequence[ChainedRating], mismatched: list[int]
) -> set[str]:
    links = {genesis(digest, hub_id)} | {chain[other].link for other in mismatched}
    return links | {chain[other - 1].link for other in mismatched if other > 0}


def _follows_a_moved_rating(
    digest: Digest, hub_id: str, chain: Sequence[ChainedRating], mismatched: list[int], index: int
) -> bool:
    """Whether the rating at `index` is intact and only its predecessor moved away."""
    if len(mismatched) > MOVE_SEARCH_LIMIT:
        return False
    rating = chain[index]
    previous_links = _candidate_previous_links(digest, hub_id, chain, mismatched)
    previous_links.discard(chain[index - 1].link if index > 0 else "")
    return any(next_link(digest, prev, rating.fields) == rating.link for prev in previous_links)


def _original_position(
    digest: Digest, hub_id: str, chain: Sequence[ChainedRating], mismatched: list[int], index: int
) -> int | None:
    """The rating id under which the content at `index` was first chained, if another.

    Rows may have been reordered with their links (the rating id changed) or without
    them (the content swapped): both the row's own link and the link stored at the
    other position are tried, after any link the mismatched rows hold.
    """
    if len(mismatched) > MOVE_SEARCH_LIMIT:
        return None
    rating = chain[index]
    previous_links = _candidate_previous_links(digest, hub_id, chain, mismatched)
    for other in mismatched:
        if other == index:
            continue
        target = chain[other]
        moved = {**rating.fields, "rating_id": target.rating_id}
        sealed = {rating.link, target.link}
        if any(next_link(digest, prev, moved) in sealed for prev in previous_links):
            return target.rating_id
    return None


def _against_journal(
    chain: Sequence[ChainedRating], journaled: Mapping[int, str], next_id: int
) -> list[ChainBreak]:
    found: list[ChainBreak] = []
    for rating in chain:
        recorded = journaled.get(rating.rating_id)
        if recorded is not None and recorded != rating.link:
            detail = (
                f"rating {rating.rating_id}: its link differs from the one journaled when it "
                "was recorded (the chain was recomputed)"
            )
            found.append(ChainBreak(rating.rating_id, "relinked", detail))
    held = {rating.rating_id for rating in chain}
    for rating_id in sorted(journaled):
        if rating_id >= next_id and rating_id not in held:
            detail = f"rating {rating_id} was journaled but is missing from the chain"
            found.append(ChainBreak(rating_id, "deleted", detail))
    return found
