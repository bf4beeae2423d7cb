"""Alerts for crews: lifecycle, escalation, routing, silences, delivery, acknowledging.

Modules, each owning one thing:

* deciding: `lifecycle` (the state machine), `escalation` (ladders), `hours` (what
  pages when the hall is closed), `routing` (which team), `silences` (maintenance
  windows);
* delivering: `delivery` (fan-out, retries, outcomes), `channels` (MQTT, SMS,
  webhook, e-mail), `modem` (AT commands to a GSM modem), `crew_mqtt` (the hub's
  connection to handsets);
* acknowledging: `acks` (who may act), `replies` (SMS replies), `api` (console
  routes), `mobile` (the phone page), `cli` (``hallhub alerts``);
* `crews` wires them for the hub service; `store`, `schema`, `settings`, `errors`.
"""

from hub.alerts.errors import (
    AlertError,
    AlertLatchedError,
    AlertNotFoundError,
    ChannelError,
    SilenceError,
)
from hub.alerts.lifecycle import AlertService
from hub.alerts.routing import DevicePlace
from hub.alerts.settings import AlertsSection
from hub.alerts.store import alert_counts, encode_notice, list_alerts

__all__ = [
    "AlertError",
    "AlertLatchedError",
    "AlertNotFoundError",
    "AlertService",
    "AlertsSection",
    "ChannelError",
    "DevicePlace",
    "SilenceError",
    "alert_counts",
    "encode_notice",
    "list_alerts",
]
