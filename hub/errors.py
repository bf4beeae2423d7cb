"""Errors raised by the hub package.

HallhubError
├── ConfigError            a configuration or profile file is invalid
├── JournalError           the event journal cannot be opened or written
│   └── JournalClosedError the journal was used after close()
├── BrokerError            the managed MQTT broker cannot be started or stopped
└── MqttAuthError          MQTT credential or ACL files cannot be read or written
"""

from __future__ import annotations


class HallhubError(Exception):
    """Base class of every error hallhub raises on purpose."""


class ConfigError(HallhubError):
    """A file a user wrote is invalid. Carries the file, line and field."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(f"{file}: " + "; ".join(problems))


class JournalError(HallhubError):
    """The journal could not do what was asked."""


class JournalClosedError(JournalError):
    """The journal was used after it was closed."""


class BrokerError(HallhubError):
    """The MQTT broker the hub manages failed. Carries the tail of the broker's log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        detail = f"\n--- last lines of the broker log ---\n{log_tail}" if log_tail else ""
        super().__init__(message + detail)


class MqttAuthError(HallhubError):
    """The MQTT password, ACL or credentials files could not be read or written."""
