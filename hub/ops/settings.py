"""The ``operations:`` section of the hall configuration: shutdown, WAL, retention, logs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogSection(_Section):
    """How the hub writes its log lines (always to standard error, for journald)."""

    format: Literal["text", "json"] = Field(
        default="text", description="text: one readable line; json: one JSON object a line"
    )
    level: LogLevel = "INFO"
    levels: dict[str, LogLevel] = Field(
        default={}, description="level per logger (module) name, e.g. {devices.mqtt_ingest: DEBUG}"
    )


class WalSection(_Section):
    """Keeps the journal's write-ahead log bounded even under long readers."""

    checkpoint_interval: float = Field(default=30.0, gt=0, description="seconds between checks")
    reader_grace: float = Field(
        default=60.0,
        gt=0,
        description="seconds a checkpoint may stay incomplete before writers pause for readers",
    )
    writer_pause: float = Field(
        default=10.0, gt=0, description="longest pause of the writer while readers finish"
    )


class RetentionSection(_Section):
    """How long each kind of record stays in the journal."""

    telemetry_days: float = Field(default=30.0, ge=1)
    health_days: float = Field(default=90.0, ge=1)
    rating_years: float = Field(default=3.0, ge=0.5)
    alarm_years: float = Field(default=3.0, ge=0.5)
    ticket_years: float = Field(default=3.0, ge=0.5)
    # Rating work guides ask for at least six months of admin and crew actions.
    audit_years: float = Field(default=3.0, ge=0.5)
    interval: float = Field(default=3600.0, gt=0, description="seconds between prunes")


class OperationsSection(_Section):
    """Everything that keeps a hub healthy on an unattended box."""

    shutdown_timeout: float = Field(
        default=10.0, gt=0, description="seconds a SIGTERM gets to stop the hub cleanly"
    )
    wal: WalSection = WalSection()
    retention: RetentionSection = RetentionSection()
    logs: LogSection = LogSection()
