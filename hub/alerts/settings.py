"""The ``alerts:`` section of the hall configuration: routes, ladders, hours, channels.

Kept beside the code that reads it; hub.config only hangs it into the file's schema.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Severity = Literal["urgent", "high", "normal", "low"]
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Route(_Section):
    """Send alerts matching every given part to `team`; the first matching route wins."""

    kind: str | None = None
    zone: str | None = None
    floor: int | None = None
    severity: Severity | None = None
    team: str


class EscalationStep(_Section):
    """`after` seconds since the first page, page `notify` too, unless acknowledged."""

    after: float = Field(gt=0)
    notify: str


def _default_ladders() -> dict[str, list[EscalationStep]]:
    return {
        "urgent": [
            EscalationStep(after=60, notify="crew_lead"),
            EscalationStep(after=180, notify="supervisor"),
        ],
        "high": [
            EscalationStep(after=600, notify="crew_lead"),
            EscalationStep(after=1800, notify="supervisor"),
        ],
    }


class ClosedHours(_Section):
    """When the hall is closed, and which severities still page at night."""

    opens: str = "08:30"
    closes: str = "17:30"
    weekdays: list[int] = Field(default=[0, 1, 2, 3, 4, 5], description="0 is Monday")
    timezone: str = "Asia/Shanghai"
    page_when_closed: list[Severity] = ["urgent"]

    @field_validator("opens", "closes")
    @classmethod
    def _is_time(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError("must be HH:MM (24 h)")
        return value


class Flapping(_Section):
    """A condition changing `transitions` times within `window` seconds is flapping.

    Severities in `never_suppress` page every time however often they repeat: a
    toilet call pressed again after each reset is a person, not a fault, until
    someone has looked.
    """

    transitions: int = Field(default=6, ge=2)
    window: float = Field(default=300, gt=0)
    never_suppress: list[Severity] = ["urgent"]


class TeamChannels(_Section):
    """Where a team (or a role on a ladder) is paged besides its MQTT topic."""

    sms: list[str] = []
    webhooks: list[str] = []
    email: list[str] = []


class Modem(_Section):
    """A GSM modem on a serial port, for SMS that works with the WAN down."""

    port: str
    baudrate: int = 115200
    poll_interval: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=5.0, gt=0)


class Smtp(_Section):
    """The mail server for e-mail pages."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "hallhub@localhost"


class Retry(_Section):
    """How each delivery is retried: capped, jittered exponential backoff."""

    attempts: int = Field(default=5, ge=1, le=50)
    first_delay: float = Field(default=1.0, gt=0)
    max_delay: float = Field(default=60.0, gt=0)


class AlertsSection(_Section):
    """Everything about alerts for crews."""

    routes: list[Route] = []
    ladders: dict[str, list[EscalationStep]] = Field(default_factory=_default_ladders)
    team_ladders: dict[str, dict[str, list[EscalationStep]]] = {}
    latched_conditions: list[str] = ["toilet_call"]
    flapping: Flapping = Flapping()
    closed_hours: ClosedHours | None = None
    teams: dict[str, TeamChannels] = {}
    handsets: dict[str, str] = Field(default={}, description="handset id -> team")
    modem: Modem | None = None
    smtp: Smtp | None = None
    retry: Retry = Retry()
    tick_interval: float = Field(default=1.0, gt=0)
