"""The ``ratings:`` section of the hall configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.ratings.levels import check_code_map


class RatingsSection(BaseModel):
    """How the hall handles ratings, follow-up tasks and the chain."""

    model_config = ConfigDict(extra="forbid")

    hash: Literal["sha256", "sm3"] = Field(
        default="sha256", description="chain hash and lookup-key MAC; fixed once a chain exists"
    )
    contact_within_working_days: int = Field(default=1, ge=1, le=30)
    fix_within_working_days: int = Field(default=15, ge=1, le=90)
    follow_up_after_days: int = Field(
        default=60, ge=1, le=365, description="unrated cases older than this are listed"
    )
    unrated_counts_as_basic_after_days: int | None = Field(
        default=None,
        ge=1,
        le=365,
        description="e.g. 7: an unrated case is counted as 基本满意 after that many days",
    )
    supervisor_team: str = "supervisor"
    check_interval: float = Field(default=60.0, gt=0, description="seconds between sweeps")
    targets: dict[str, dict[str, int]] = Field(
        default={}, description="extra level-name-to-code maps per target system"
    )

    @field_validator("targets")
    @classmethod
    def _complete_maps(cls, targets: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for name, codes in targets.items():
            check_code_map(name, codes)
        return targets
