"""`hallhub bench`: run every benchmark of the source checkout and print one table.

The benchmarks live in ``bench/`` beside the packages (they are not installed);
``bench/suite.py`` finds and runs them. This command only starts it from the
checkout's root with the same interpreter, so it sees the same hallhub.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hub.errors import HallhubError

CHECKOUT = Path(__file__).resolve().parent.parent


def run_benchmarks(quick: bool, only: list[str] | None) -> int:
    """Run the bench suite; its exit code (1 when a benchmark did not finish)."""
    if not (CHECKOUT / "bench" / "suite.py").is_file():
        raise HallhubError(
            f"hallhub bench needs the source checkout: no bench/suite.py under {CHECKOUT}"
        )

    command = [sys.executable, "-m", "bench.suite"]
    if quick:
        command.append("--quick")
    for name in only or ():
        command += ["--only", name]
    return subprocess.run(command, cwd=CHECKOUT, check=False).returncode
