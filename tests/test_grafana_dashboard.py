"""The shipped Grafana dashboard queries only metrics the hub really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from hub import metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "hallhub.json"
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def exposed_names() -> set[str]:
    """Every sample and family name in the hub's /metrics exposition."""
    text = generate_latest(metrics.REGISTRY).decode()
    names = set(re.findall(r"^# TYPE (\S+)", text, flags=re.MULTILINE))
    for name in list(names):
        names.update(name + suffix for suffix in SUFFIXES)
    return names


def test_every_metric_the_dashboard_queries_is_exposed() -> None:
    """Each hallhub_* name in every panel's PromQL is a metric of /metrics, and the
    dashboard covers the metrics hall IT watches (ingest to flash wear)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bhallhub_[a-z_]+", target["expr"])
    }
    exposed = exposed_names()

    assert queried - exposed == set()
    for wanted in (
        "hallhub_events_ingested_total",
        "hallhub_dead_letters_total",
        "hallhub_rule_firings_total",
        "hallhub_alerts",
        "hallhub_sync_backlog_events",
        "hallhub_sync_lag_seconds",
        "hallhub_devices_online",
        "hallhub_modbus_request_duration_seconds_bucket",
        "hallhub_sqlite_written_bytes_total",
    ):
        assert wanted in queried, wanted
