"""The ``tickets:`` section of the hall configuration: categories and windows."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

CategoryLetter = Annotated[str, Field(pattern=r"^[A-Z]{1,2}$")]
WindowName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(_Strict):
    """One service category, known to citizens by its name and its letter prefix."""

    name: str = Field(max_length=64)


class Window(_Strict):
    """One service window and the categories it serves."""

    categories: tuple[CategoryLetter, ...] = Field(min_length=1)


class TicketsSection(_Strict):
    """Queue numbering and calling for the hall."""

    categories: dict[CategoryLetter, Category] = {}
    windows: dict[WindowName, Window] = {}
    silent_call_depth: int = Field(
        default=3, ge=1, le=20, description="push a ticket when it reaches this place"
    )
    appointment_grace: float = Field(
        default=900.0, ge=0, description="seconds after the slot starts an appointment is late"
    )

    @model_validator(mode="after")
    def _windows_serve_known_categories(self) -> TicketsSection:
        for name, window in self.windows.items():
            unknown = [c for c in window.categories if c not in self.categories]
            if unknown:
                raise ValueError(f"window {name} serves unknown categories {unknown}")
        return self
