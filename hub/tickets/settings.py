"""The ``tickets:`` section of the hall configuration: categories and windows.

A city may assign categories and windows for all its halls (`WindowAssignments`);
the hall's own section sits on top of them, category by category and window by
window (`layered_tickets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.errors import ConfigError
from hub.yamlfile import load_model

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


class WindowAssignments(_Strict):
    """Service categories and the windows serving them, as a city assigns them.

    A window may serve a category only the hall defines, so the two are checked
    together, when they are layered.
    """

    categories: dict[CategoryLetter, Category] = {}
    windows: dict[WindowName, Window] = {}


def load_window_assignments(path: Path) -> WindowAssignments:
    """Read and validate a file of window assignments."""
    return load_model(path, WindowAssignments)


def layered_tickets(
    city: WindowAssignments | None, hall: TicketsSection, source: str
) -> TicketsSection:
    """The hall's section on the city's assignments; the hall's wins per letter and window.

    Raises ConfigError, naming `source`, when a window then serves an unknown category.
    """
    if city is None:
        return hall
    layered = hall.model_dump()
    layered["categories"] = {**city.model_dump()["categories"], **layered["categories"]}
    layered["windows"] = {**city.model_dump()["windows"], **layered["windows"]}
    try:
        return TicketsSection.model_validate(layered)
    except pydantic.ValidationError as exc:
        problems = [error["msg"].removeprefix("Value error, ") for error in exc.errors()]
        raise ConfigError(source, problems) from exc
