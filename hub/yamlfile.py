"""Reading the YAML files users write, keeping line numbers for error messages.

Every file a user writes (the hall configuration, device models in
``firmware_configs/``, rule packs) is YAML, checked against a pydantic schema. When
the check fails, the error names the file, the line and the field, so hall IT can go
straight to the mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from hub.errors import ConfigError

Model = TypeVar("Model", bound=pydantic.BaseModel)
Location = tuple[str | int, ...]


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key and list item."""


def read_yaml(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse `path`, returning its data and a map from field location to line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text at byte {exc.start}"]) from exc

    try:
        root = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(str(path), [f"{where}not valid YAML ({exc})"]) from exc

    lines: dict[Location, int] = {}
    if root is not None:
        _collect_lines(root, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, here: Location, lines: dict[Location, int]) -> None:
    lines[here] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*here, key)] = key_node.start_mark.line + 1
            _collect_lines(value_node, (*here, key), lines)
            lines[(*here, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*here, index), lines)


def line_of(lines: dict[Location, int], location: Location) -> int | None:
    """The line of `location`, or of its nearest parent that has one."""
    for end in range(len(location), -1, -1):
        line = lines.get(tuple(str(p) if isinstance(p, str) else p for p in location[:end]))
        if line is not None:
            return line
    return None


def describe_errors(
    error: pydantic.ValidationError, lines: dict[Location, int], prefix: Location = ()
) -> list[str]:
    """Turn pydantic's errors into 'line N: field: message' strings."""
    problems = []
    for item in error.errors():
        location = (*prefix, *item["loc"])
        field = ".".join(str(part) for part in location) or "(top level)"
        line = line_of(lines, location)
        where = f"line {line}: " if line is not None else ""
        problems.append(f"{where}{field}: {item['msg']}")
    return problems


def load_model(path: Path, model: type[Model]) -> Model:
    """Read `path` and validate it as `model`, or raise `ConfigError`."""
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(str(path), ["the file is empty"])
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(str(path), describe_errors(exc, lines)) from exc
