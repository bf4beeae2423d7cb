"""How ``hallhub`` commands print: aligned tables for people, JSON for scripts, progress.

Every command that mirrors the console prints through here, so ``--json`` means
the same everywhere and tables line up the same way. Progress goes to standard
error, so it never mixes into output a script reads.
"""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Any, TextIO

EMPTY = "-"


def render_json(document: Any) -> str:
    """Stable, readable JSON (Chinese text kept as is)."""
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of `columns` from `rows`, aligned for wide (CJK) characters too."""
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([_width(column), *(_width(line[index]) for line in cells)])
        for index, column in enumerate(columns)
    ]
    lines = [_line(list(columns), widths), _line(["-" * w for w in widths], widths)]
    lines.extend(_line(line, widths) for line in cells)
    return "\n".join(lines)


def emit(
    document: Any,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    as_json: bool,
    stream: TextIO | None = None,
) -> None:
    """Print `document` as JSON, or `rows` as a table (or a line saying there are none)."""
    out = stream or sys.stdout
    if as_json:
        out.write(render_json(document) + "\n")
    elif rows:
        out.write(render_table(rows, columns) + "\n")
    else:
        out.write("(none)\n")


class Progress:
    """A one-line progress bar on standard error: ``[#####.....] 50/100 label``."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30):
        self.total = max(total, 0)
        self.label = label
        self.done = 0
        self._stream = stream or sys.stderr
        self._width = width
        self._started = time.monotonic()

    def update(self, done: int) -> None:
        """Show `done` of the total (clamped to it)."""
        self.done = min(max(done, 0), self.total) if self.total else done
        filled = self._width * self.done // self.total if self.total else 0
        bar = "#" * filled + "." * (self._width - filled)
        elapsed = time.monotonic() - self._started
        self._stream.write(f"\r[{bar}] {self.done}/{self.total} {self.label} ({elapsed:.0f} s)")
        self._stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        self._stream.write("\n")
        self._stream.flush()


def _text(value: Any) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _line(cells: list[str], widths: list[int]) -> str:
    padded = [
        cell + " " * (width - _width(cell)) for cell, width in zip(cells, widths, strict=True)
    ]
    return "  ".join(padded).rstrip()
