"""Alerts for crews: lifecycle, escalation, routing, silences and delivery.

Modules, each owning one thing: `lifecycle` (the state machine), `escalation`
(ladders), `hours` (what pages when the hall is closed), `routing` (which team),
`silences` (maintenance windows), `store` (reading), `schema` (tables),
`settings` (the ``alerts:`` configuration section), `errors`.
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
