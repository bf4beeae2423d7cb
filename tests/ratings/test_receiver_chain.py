"""The city's stores keep each hub's rating chain links and record every break: a
rating whose data no longer matches its link, and an index sent again with another
link. Both stores, SQLite and PostgreSQL, apply the same check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.events import Lane
from hub.ratings import SHA256, genesis, next_link
from sync.city_store import BatchStore, LaneUpload, SQLiteBatchStore, WireEvent

HUB = "hall-9"
EPOCH = 7


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchStore]:
    if request.param == "sqlite":
        opened: BatchStore = SQLiteBatchStore(tmp_path / "city.db")
    else:
        from sync.pg_store import PostgresBatchStore

        opened = PostgresBatchStore(request.getfixturevalue("postgres_dsn"))
    yield opened
    opened.close()


def _rating(index: int, level: str) -> dict[str, Any]:
    return {"rating_id": index, "level": level, "window": "W07", "rated_at": 1_772_416_800.5}


def _event(seq: int, index: int, previous: str, rating: dict[str, Any], link: str) -> WireEvent:
    chain = {"index": index, "previous": previous, "link": link, "algorithm": "sha256"}
    return WireEvent.model_validate(
        {
            "hub_id": HUB,
            "epoch": EPOCH,
            "lane": Lane.RATING,
            "seq": seq,
            "event_id": f"rating-event-{seq}",
            "device_id": "ratings",
            "kind": "rating",
            "type": "rating_recorded",
            "data": {"rating": rating, "chain": chain},
            "received_at": 1_772_416_800.0 + seq,
            "clock_synchronised": True,
        }
    )


def _send(store: BatchStore, *events: WireEvent, base: int) -> None:
    upload = LaneUpload(base=base, events=list(events))
    store.apply_batch(HUB, EPOCH, {Lane.RATING: upload}, 1_772_416_900.0)


def test_store_records_edited_data_and_a_rewritten_index(store: BatchStore) -> None:
    """An honest chain leaves no break and moves the head; a rating whose data was
    changed after sealing, an index sent again with another link, and a rating event
    without its chain are each recorded as a break, and the events are still stored."""
    first, second = _rating(1, "满意"), _rating(2, "不满意")
    link1 = next_link(SHA256, genesis(SHA256, HUB), first)
    link2 = next_link(SHA256, link1, second)
    _send(
        store,
        _event(1, 1, genesis(SHA256, HUB), first, link1),
        _event(2, 2, link1, second, link2),
        base=0,
    )
    honest = store.hub_status(HUB)["rating_chain"]

    third = _rating(3, "非常不满意")
    link3 = next_link(SHA256, link2, third)
    edited = {**third, "level": "满意"}
    other_second = _rating(2, "非常满意")
    rewritten = next_link(SHA256, link1, other_second)
    _send(
        store,
        _event(3, 3, link2, edited, link3),
        _event(4, 2, link1, other_second, rewritten),
        base=2,
    )
    unreadable = _event(5, 4, link3, third, link3).model_copy(update={"data": {"rating": third}})
    _send(store, unreadable, base=4)
    status = store.hub_status(HUB)

    assert (honest["head_index"], honest["head_link"], honest["breaks"]) == (2, link2, 0)
    found = {(b["chain_index"], b["problem"]) for b in status["rating_chain"]["recent_breaks"]}
    assert found == {(3, "link_mismatch"), (2, "index_rewritten"), (-1, "unreadable")}
    assert status["rating_chain"]["head_index"] == 3
    assert status["events_stored"]["rating"] == 5


@pytest.mark.parametrize(
    "data",
    [
        {"rating": ["not", "an", "object"], "chain": {"index": 1, "previous": "", "link": ""}},
        {"rating": {"rating_id": 1}, "chain": "not an object"},
        {"rating": {"rating_id": 1}, "chain": {"index": 2**70, "previous": "", "link": ""}},
    ],
)
def test_malformed_chain_data_is_a_break_not_a_refused_batch(
    store: BatchStore, data: dict[str, Any]
) -> None:
    """A hub with a valid key sending rating data of the wrong shape, or an index no
    database holds, gets the event stored and an `unreadable` break, not an error that
    would refuse every batch after it."""
    event = _event(1, 1, "", _rating(1, "满意"), "").model_copy(update={"data": data})

    _send(store, event, base=0)
    status = store.hub_status(HUB)

    assert status["events_stored"]["rating"] == 1
    assert [b["problem"] for b in status["rating_chain"]["recent_breaks"]] == ["unreadable"]
