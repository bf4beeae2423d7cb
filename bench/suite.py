"""Run every benchmark in bench/ and print one table of their figures.

A benchmark is a module of this folder with a top-level ``main``; helper modules
(the event generators, the result format, stand-ins) have none and are left out.
Each runs as its own process, ``python -m bench.<name>``, with ``--quick`` when
asked for a short run, and ends by printing ``BENCH-RESULT`` lines
(`bench.report.emit`). This runner gathers those lines into one table:

    python -m bench.suite [--quick] [--only NAME ...]     (or: hallhub bench)

A benchmark that exits non-zero, or prints no result, shows as one row that says
so; the runner then exits 1, so a broken benchmark is never mistaken for a pass.
"""

from __future__ import annotations

import argparse
import ast
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Row, parse

FOLDER = Path(__file__).resolve().parent
ROOT = FOLDER.parent
# Modules with a main that are not benchmarks of their own.
NOT_BENCHES = frozenset({"suite"})
HEADINGS = ("bench", "measure", "target", "figure", "result")


@dataclass
class BenchRun:
    """What one benchmark process printed and how it ended."""

    name: str
    rows: list[Row] = field(default_factory=list)
    returncode: int = 0
    seconds: float = 0.0
    tail: str = ""

    @property
    def failed(self) -> bool:
        return self.returncode != 0 or not self.rows


def discover(folder: Path = FOLDER) -> list[str]:
    """Names of the benchmark modules in `folder`: those with a top-level ``main``."""
    names = []
    for path in sorted(folder.glob("*.py")):
        if path.stem.startswith("_") or path.stem in NOT_BENCHES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            names.append(path.stem)
    return names


def takes_quick(name: str, folder: Path = FOLDER) -> bool:
    """Whether the benchmark offers ``--quick``."""
    return '"--quick"' in (folder / f"{name}.py").read_text(encoding="utf-8")


def run_bench(name: str, quick: bool, timeout: float) -> BenchRun:
    """Run one benchmark as its own process, echoing its output, and keep its rows."""
    command = [sys.executable, "-m", f"bench.{name}"]
    if quick and takes_quick(name):
        command.append("--quick")
    print(f"== {' '.join(command[1:])}", flush=True)
    run = BenchRun(name)
    started = time.monotonic()
    # Its own process group, so a timeout also ends the hub and broker it started.
    bench = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = bench.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_group(bench)
        run.returncode, run.tail = -1, f"timed out after {timeout:.0f} s"
        return run

    run.seconds = time.monotonic() - started
    run.returncode = bench.returncode
    for line in stdout.splitlines():
        row = parse(line)
        if row is None:
            print(f"   {line}", flush=True)
        else:
            run.rows.append(row)
    run.tail = " | ".join(stderr.strip().splitlines()[-3:])
    return run


def end_group(bench: subprocess.Popen[str]) -> None:
    """SIGTERM to the benchmark's process group, SIGKILL to what is left after 15 s."""
    os.killpg(bench.pid, signal.SIGTERM)
    try:
        bench.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        bench.communicate()


def readable(figure: float) -> str:
    """Whole numbers with thousands separators from 100 up, three digits below."""
    return f"{figure:,.0f}" if abs(figure) >= 100 else f"{figure:.3g}"


def table_lines(runs: list[BenchRun]) -> list[str]:
    """One aligned table: a row per figure, and one per benchmark that failed."""
    cells: list[tuple[str, ...]] = [HEADINGS]
    for run in runs:
        for row in run.rows:
            verdict = {True: "met", False: "MISSED", None: "-"}[row.met]
            figure = f"{readable(row.figure)} {row.unit}".strip()
            cells.append((row.bench, row.measure, row.target, figure, verdict))
        if run.failed:
            why = f"exit {run.returncode}" if run.returncode else "printed no result"
            cells.append((run.name, "(did not finish)", "-", why, "FAILED"))
    widths = [max(len(row[column]) for row in cells) for column in range(len(HEADINGS))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
             for row in cells]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (minutes, not hours)")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only these")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    args = parser.parse_args()

    names = discover()
    unknown = set(args.only or ()) - set(names)
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    chosen = [name for name in names if not args.only or name in args.only]
    runs = [run_bench(name, args.quick, args.timeout) for name in chosen]

    print()
    print("\n".join(table_lines(runs)))
    for run in runs:
        if run.failed and run.tail:
            print(f"{run.name}: {run.tail}")
    return 1 if any(run.failed for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
