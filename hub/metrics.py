"""Prometheus metrics of the hub, in a registry of its own.

Names follow Prometheus conventions: a ``hallhub_`` prefix, base units, ``_total``
for counters. Counters are safe to update from any thread.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

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
