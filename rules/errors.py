"""Errors raised by the rules package.

HallhubError                   (hub.errors)
├── ConfigError                a rule file is invalid: carries the file and its lines
└── RulesError
    ├── ScheduleError          a cron-like schedule cannot be parsed
    └── ReplayError            a replay preview cannot run (range, journal)
"""

from __future__ import annotations

from hub.errors import HallhubError


class RulesError(HallhubError):
    """Base class of the rules package's own errors."""


class ScheduleError(RulesError, ValueError):
    """A schedule is not valid. A ValueError too, so rule validation reports it."""

    def __init__(self, schedule: str, reason: str) -> None:
        self.schedule = schedule
        super().__init__(f"schedule {schedule!r}: {reason}")


class ReplayError(RulesError):
    """The replay preview cannot run as asked."""
