"""`hallhub demo --for` runs the whole simulated hall and reconciles by event id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_reconciles_three_counts_across_a_city_outage(tmp_path: Path) -> None:
    """Nothing missing or doubled across devices, journal and city, even for a run that
    ends while the city is down; alarms open and close; printers print only numbers the
    hub allocated, each once."""
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "demo",
            "--for",
            "15",  # ends inside the city outage (12 s to 17 s): the city must come back
            "--console-port",
            "0",
            "--state-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        timeout=240,
        check=False,
    )
    stderr = finished.stderr.decode(errors="replace")

    assert finished.returncode == 0, stderr[-3000:]
    summary = json.loads(finished.stdout)
    report = summary["reconciliation"]
    assert report["ok"], report
    assert report["published"]["events"] > 10
    assert report["journal"]["missing"]["count"] == 0
    assert report["receiver"]["missing"]["count"] == 0
    assert summary["devices"]["known"] >= 13
    assert summary["devices"]["online"] == summary["devices"]["known"]
    assert summary["alerts"]["opened"] >= 1 and summary["alerts"]["closed"] >= 1
    tickets = summary["tickets"]
    assert tickets["printed"] >= 2 and tickets["printed_twice"] == 0
    assert tickets["unaccounted"] == 0 and tickets["allocated"] >= tickets["printed"]
    assert "city receiver killed" in stderr and summary["city_outages"] == 1
    assert "token=" in stderr  # the console address is printed with its token
