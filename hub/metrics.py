"""Prometheus metrics of the hub, in a registry of its own.

Names follow Prometheus conventions: a ``hallhub_`` prefix, base units, ``_total``
for counters. Counters are safe to update from any thread.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_INGESTED = Counter(
    "hallhub_events_ingested",
    "Device messages handled by the hub, by device kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "hallhub_dead_letters",
    "Messages refused and kept in the dead-letter table, by reason.",
    ["reason"],
    registry=REGISTRY,
)
RULE_FIRINGS = Counter(
    "hallhub_rule_firings",
    "Times a rule's actions ran, by rule id.",
    ["rule"],
    registry=REGISTRY,
)
ALERTS = Gauge(
    "hallhub_alerts",
    "Alerts by state.",
    ["state"],
    registry=REGISTRY,
)
ALERT_DELIVERIES = Counter(
    "hallhub_alert_deliveries",
    "Pages finished, by channel and outcome (delivered or failed after retries).",
    ["channel", "state"],
    registry=REGISTRY,
)
ACK_REFUSALS = Counter(
    "hallhub_alert_ack_refusals",
    "Acknowledgements refused, by source (mqtt, sms).",
    ["source"],
    registry=REGISTRY,
)
DEVICES_ONLINE = Gauge(
    "hallhub_devices_online",
    "Devices currently online.",
    registry=REGISTRY,
)
SYNC_BACKLOG = Gauge(
    "hallhub_sync_backlog_events",
    "Journaled events not yet acknowledged by the city, per lane.",
    ["lane"],
    registry=REGISTRY,
)
MODBUS_POLLS = Counter(
    "hallhub_modbus_polls",
    "Modbus polls, by result: ok, exception_reply, timeout, link_error, bad_reply, bad_value.",
    ["result"],
    registry=REGISTRY,
)
SYNC_LAG = Gauge(
    "hallhub_sync_lag_seconds",
    "Age of the oldest event the city has not acknowledged yet, per lane (0 when none).",
    ["lane"],
    registry=REGISTRY,
)
MODBUS_LATENCY = Histogram(
    "hallhub_modbus_request_duration_seconds",
    "Time from sending a Modbus read to its reply (or failure), by register table.",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
SQLITE_WRITTEN = Counter(
    "hallhub_sqlite_written_bytes",
    "Bytes SQLite appended to the journal's write-ahead log: flash wear on the hall box."
    " Use increase(...[1d]) for bytes per day.",
    registry=REGISTRY,
)
