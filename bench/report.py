"""The one result format every benchmark prints, so `hallhub bench` can gather them.

A benchmark prints whatever helps a reader, and ends by calling `emit` with its
rows. Each row is printed once as a readable line and once as a machine line
starting with ``BENCH-RESULT``, which the bench runner collects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

MARKER = "BENCH-RESULT"


@dataclass(frozen=True)
class Row:
    """One measured figure against its target.

    `figure` is a ratio to a baseline measured in the same run wherever the
    benchmark has one (then `unit` says so, e.g. "x bare paho"). `met` is None
    for figures that only inform and have no target.
    """

    bench: str
    measure: str
    figure: float
    unit: str
    target: str
    met: bool | None


def emit(rows: list[Row]) -> None:
    """Print each row for a reader and for the bench runner."""
    for row in rows:
        verdict = {True: "met", False: "missed", None: "-"}[row.met]
        print(
            f"{row.bench}: {row.measure} = {row.figure:,.3g} {row.unit}"
            f" (target {row.target}: {verdict})"
        )
        print(MARKER, json.dumps(asdict(row), ensure_ascii=False), flush=True)


def parse(line: str) -> Row | None:
    """The row on a ``BENCH-RESULT`` line, or None for any other line."""
    if not line.startswith(MARKER + " "):
        return None
    return Row(**json.loads(line[len(MARKER) + 1 :]))
