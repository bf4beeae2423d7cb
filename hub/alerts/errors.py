"""Errors raised by the alerts package.

HallhubError (hub.errors)
└── AlertError                 an alert operation could not be done
    ├── AlertNotFoundError     no alert with that id in a state that allows the change
    ├── AlertLatchedError      a latched alert was resolved by hand; reset it at the source
    ├── SilenceError           a silence is invalid (unknown scope, expiry in the past)
    └── ChannelError           one delivery attempt on one channel failed
        └── ModemError         the GSM modem answered ERROR or did not answer
"""

from __future__ import annotations

from hub.errors import HallhubError


class AlertError(HallhubError):
    """An alert operation could not be done."""


class AlertNotFoundError(AlertError):
    """No alert with that id, or it is not in a state that allows the change."""


class AlertLatchedError(AlertError):
    """The alert's condition is latched: only a reset at the device resolves it."""

    def __init__(self, alert_id: int, condition: str) -> None:
        self.alert_id = alert_id
        self.condition = condition
        super().__init__(
            f"alert {alert_id} ({condition}) is latched; it resolves when reset at the device"
        )


class SilenceError(AlertError):
    """A silence could not be created as asked."""


class ChannelError(AlertError):
    """One delivery attempt failed. Carries the channel and the target."""

    def __init__(self, channel: str, target: str, reason: str) -> None:
        self.channel = channel
        self.target = target
        self.reason = reason
        super().__init__(f"{channel} to {target}: {reason}")


class ModemError(ChannelError):
    """The GSM modem refused a command or stayed silent."""
