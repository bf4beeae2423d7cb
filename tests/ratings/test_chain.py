"""The rating hash chain: published test vectors, and `hallhub ratings verify` naming
each edited, deleted or reordered rating in a real journal file."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import pytest

from hub.cli import main
from hub.ratings import SHA256, SM3, ChainError, genesis, next_link
from hub.ratings.store import chained_ratings
from tests.ratings.kit import api_rating, ratings_hall

LEVELS_RECORDED = ["满意", "不满意", "非常满意", "基本满意"]


def test_sm3_matches_its_published_vector() -> None:
    """SM3("abc") is the value printed in GB/T 32905-2016, appendix A.1."""
    assert SM3.hash(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_hmac_over_a_pluggable_hash_matches_the_standard_library() -> None:
    """The HMAC built over any hash is RFC 2104's: over SHA-256 it equals hmac's, for a
    short key and for a key longer than a block."""
    for key in (b"hall-secret", b"k" * 100):
        expected = hmac.new(key, b"phone\n13800000001", hashlib.sha256).digest()
        assert SHA256.mac(key, b"phone\n13800000001") == expected
    assert SM3.mac(b"hall-secret", b"x") != SM3.mac(b"other-secret", b"x")


async def _hall_with_ratings(state_dir: Path, settings: dict[str, str] | None = None) -> None:
    async with ratings_hall(state_dir, settings) as hall:
        for number, level in enumerate(LEVELS_RECORDED, start=1):
            await hall.desk.record(api_rating(hall.clock, level, case_no=f"BJ-{number}"))


def _verify(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    config = state_dir.parent / f"{state_dir.name}.yaml"
    config.write_text(
        json.dumps({"hub": {"id": "hall-test", "state_dir": str(state_dir)}}), encoding="utf-8"
    )
    capsys.readouterr()
    code = main(["ratings", "verify", "--config", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _tamper(state_dir: Path, *statements: str) -> None:
    with sqlite3.connect(state_dir / "journal.sqlite3") as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _breaks(report: dict[str, object]) -> list[tuple[int, str]]:
    found = report["breaks"]
    assert isinstance(found, list)
    return [(item["rating_id"], item["problem"]) for item in found]


async def test_verify_passes_an_untouched_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chain nobody touched verifies, exit code 0."""
    await _hall_with_ratings(tmp_path / "hub")
    code, report = _verify(tmp_path / "hub", capsys)
    assert (code, report["ok"], report["ratings"]) == (0, True, 4)


@pytest.mark.parametrize(
    ("tampering", "expected"),
    [
        (["UPDATE ratings SET level = '非常满意' WHERE rating_id = 2"], [(2, "edited")]),
        (["DELETE FROM ratings WHERE rating_id = 3"], [(3, "deleted")]),
        (["DELETE FROM ratings WHERE rating_id = 4"], [(4, "deleted")]),
        (
            [
                "UPDATE ratings SET rating_id = -2 WHERE rating_id = 2",
                "UPDATE ratings SET rating_id = 2 WHERE rating_id = 3",
                "UPDATE ratings SET rating_id = 3 WHERE rating_id = -2",
            ],
            [(2, "moved"), (3, "moved")],
        ),
    ],
    ids=["edited", "deleted", "deleted-last", "reordered"],
)
async def test_verify_names_the_tampered_rating(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tampering: list[str],
    expected: list[tuple[int, str]],
) -> None:
    """An edited, deleted (also the newest) or reordered rating is named by id and
    kind of tampering, and verify exits 1."""
    await _hall_with_ratings(tmp_path / "hub")
    _tamper(tmp_path / "hub", *tampering)
    code, report = _verify(tmp_path / "hub", capsys)
    assert (code, report["ok"]) == (1, False)
    assert _breaks(report) == expected


async def test_verify_catches_a_chain_recomputed_after_an_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An admin who edits a rating and recomputes every link still differs from the
    links journaled for the city when the ratings were recorded."""
    state_dir = tmp_path / "hub"
    await _hall_with_ratings(state_dir)
    _tamper(state_dir, "UPDATE ratings SET level = '满意' WHERE rating_id = 2")
    with sqlite3.connect(state_dir / "journal.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        previous = genesis(SHA256, "hall-test")
        for rating in chained_ratings(conn):
            previous = next_link(SHA256, previous, rating.fields)
            conn.execute(
                "UPDATE ratings SET link = ? WHERE rating_id = ?", (previous, rating.rating_id)
            )
    conn.close()

    code, report = _verify(state_dir, capsys)
    assert code == 1
    assert _breaks(report) == [(2, "relinked"), (3, "relinked"), (4, "relinked")]


async def test_an_sm3_chain_verifies_and_keeps_its_algorithm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hall configured for SM3 chains with SM3, verify checks with it, and a hub
    later configured for SHA-256 refuses to extend that chain."""
    await _hall_with_ratings(tmp_path / "hub", {"hash": "sm3"})
    code, report = _verify(tmp_path / "hub", capsys)
    assert (code, report["algorithm"], report["ratings"]) == (0, "sm3", 4)

    with pytest.raises(ChainError, match="uses sm3"):
        async with ratings_hall(tmp_path / "hub", {"hash": "sha256"}):
            pass
