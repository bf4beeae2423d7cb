"""`hallhub bench`: every benchmark is found, run, and reported in one table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.report import Row
from bench.suite import BenchRun, discover, table_lines, takes_quick

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_is_found_and_helpers_are_not() -> None:
    """Modules with a main are benchmarks and offer --quick; helpers are left out."""
    names = discover()

    for bench in ("alert_latency", "replay_day", "rules_throughput", "sync_drain"):
        assert bench in names
    assert not {"report", "hall_load", "suite"} & set(names)
    assert all(takes_quick(name) for name in names), "a benchmark without --quick"


def test_a_benchmark_that_fails_shows_as_failed_not_as_met() -> None:
    """A crashed benchmark gets its own FAILED row beside the figures of the others."""
    good = BenchRun("fast", [Row("fast", "rate", 12_000, "events/s", ">= 10,000", True)])
    slow = BenchRun("slow", [Row("slow", "p99", 40, "ms", "<= 25 ms", False)])
    broken = BenchRun("broken", returncode=1)

    lines = table_lines([good, slow, broken])

    assert lines[0].split() == ["bench", "measure", "target", "figure", "result"]
    assert "met" in lines[2] and "12,000 events/s" in lines[2]
    assert "MISSED" in lines[3]
    assert "broken" in lines[4] and "FAILED" in lines[4] and "exit 1" in lines[4]


def test_hallhub_bench_prints_one_table_of_a_real_run() -> None:
    """`hallhub bench --quick --only rules_throughput` runs it and tabulates its rows."""
    finished = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "--quick", "--only", "rules_throughput"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert finished.returncode == 0, finished.stderr[-2000:]
    table = finished.stdout.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["bench", "measure", "target", "figure", "result"]
    rows = [line for line in table[2:] if line.startswith("rules_throughput")]
    assert len(rows) == 2
    assert "x shipped pack" in rows[1]


def test_an_unknown_benchmark_is_refused_with_the_known_ones() -> None:
    """A misspelt --only names the benchmarks that exist instead of running nothing."""
    finished = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--only", "rules_thruput"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode == 2
    assert "rules_thruput" in finished.stderr and "rules_throughput" in finished.stderr
