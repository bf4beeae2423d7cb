"""Rule files in layers, each setting remembering where it came from, and hot reload.

Precedence, lowest first:

1. ``pack``: the hall rule pack shipped with hallhub (``rules/pack/hall.yaml``);
2. ``city``: the city's baseline, a folder the sync fills (``<state dir>/city-rules``);
3. ``hall``: the hall's own files (``rule_files`` in the hall configuration);
4. ``console``: rules hall IT switched on or off in the console
   (``<state dir>/console-rules``, see rules.switches).

A later layer may add rules, replace a rule by giving one with the same id, or
change single settings of an earlier rule under ``overrides:`` (for example a
threshold, or ``enabled: false``). Within a layer, files are read in name order.
Every setting of every rule records the layer, file and line it came from.

A reload validates every file before anything changes; an invalid file is refused
with its file and line, and the rules in force stay in force.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic

from hub.errors import ConfigError
from hub.yamlfile import Location, describe_errors, line_of, read_yaml
from rules.spec import RuleFile, RuleSpec

logger = logging.getLogger(__name__)

Layer = tuple[str, Path]
CITY_RULES_DIR = "city-rules"
CONSOLE_RULES_DIR = "console-rules"


def shipped_pack() -> Path:
    """The hall rule pack that ships with hallhub."""
    return Path(str(resources.files("rules") / "pack" / "hall.yaml"))


def hall_layers(state_dir: Path, hall_files: list[Path]) -> list[Layer]:
    """The layers of a hall, lowest precedence first: pack, city baseline, hall."""
    return [
        ("pack", shipped_pack()),
        ("city", state_dir / CITY_RULES_DIR),
        *(("hall", path) for path in hall_files),
        ("console", state_dir / CONSOLE_RULES_DIR),
    ]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Validated rules, in order, with the source of each of their settings."""

    rules: list[RuleSpec]
    sources: dict[str, dict[str, str]]
    files: tuple[Path, ...]


@dataclass(slots=True)
class _Merged:
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)


def layer_files(layers: list[Layer]) -> list[tuple[str, Path]]:
    """Every rule file of the layers, in precedence order (a missing folder is empty)."""
    found: list[tuple[str, Path]] = []
    for name, path in layers:
        if path.is_dir():
            found.extend((name, file) for file in sorted(path.glob("*.yaml")))
        elif path.exists() or name not in ("city", "console"):
            found.append((name, path))
    return found


def load_layers(layers: list[Layer]) -> RuleSet:
    """Read, merge and validate every layer; raise ConfigError naming file and line."""
    merged = _Merged()
    files = layer_files(layers)
    for name, path in files:
        _merge_file(merged, name, path)

    rules: list[RuleSpec] = []
    for rule_id, raw in merged.raw.items():
        try:
            rules.append(RuleSpec.model_validate(raw))
        except pydantic.ValidationError as exc:
            raise _merged_error(exc, rule_id, merged) from exc
    return RuleSet(rules, merged.sources, tuple(path for _, path in files))


def _merge_file(merged: _Merged, layer: str, path: Path) -> None:
    data, lines = read_yaml(path)
    data = {} if data is None else data
    try:
        RuleFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(str(path), describe_errors(exc, lines)) from exc

    for index, raw in enumerate(data.get("rules", [])):
        rule_id = raw["id"]
        where = ("rules", index)
        merged.raw[rule_id] = copy.deepcopy(raw)
        merged.sources[rule_id] = _sources(raw, where, lines, f"{layer}:{path}")
        merged.origin[rule_id] = f"{path}:{line_of(lines, where)}"
    for rule_id, patch in data.get("overrides", {}).items():
        where = ("overrides", rule_id)
        if rule_id not in merged.raw:
            line = line_of(lines, where)
            raise ConfigError(str(path), [f"line {line}: overrides.{rule_id}: no such rule"])
        _deep_update(merged.raw[rule_id], patch)
        merged.sources[rule_id].update(_sources(patch, where, lines, f"{layer}:{path}"))
        merged.origin[rule_id] = f"{path}:{line_of(lines, where)}"


def _sources(raw: Any, where: Location, lines: dict[Location, int], label: str) -> dict[str, str]:
    """Each leaf setting of `raw` with the file and line it was written on."""
    found: dict[str, str] = {}

    def walk(value: Any, here: Location, name: str) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(inner, (*here, key), f"{name}.{key}" if name else str(key))
            return
        found[name] = f"{label}:{line_of(lines, here)}"

    walk(raw, where, "")
    return found


def _deep_update(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _merged_error(exc: pydantic.ValidationError, rule_id: str, merged: _Merged) -> ConfigError:
    """Blame the file and line that wrote the faulty setting, in whichever layer."""
    sources = merged.sources[rule_id]
    blamed_file = merged.origin[rule_id].rsplit(":", 1)[0]
    problems = []
    for item in exc.errors():
        path = [str(part) for part in item["loc"]]
        source = None
        for end in range(len(path), 0, -1):
            prefix = ".".join(path[:end])
            source = sources.get(prefix) or next(
                (where for name, where in sources.items() if name.startswith(prefix + ".")), None
            )
            if source is not None:
                break
        where = ""
        if source is not None:
            _layer, blamed_file, line = _split_source(source)
            where = f"line {line}: "
        problems.append(f"{where}rule {rule_id}: {'.'.join(path)}: {item['msg']}")
    return ConfigError(blamed_file, problems)


def _split_source(source: str) -> tuple[str, str, str]:
    layer, rest = source.split(":", 1)
    file, line = rest.rsplit(":", 1)
    return layer, file, line


class RuleFilesWatcher:
    """Notices changed rule files and reloads them, keeping the old rules on error."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self.last_error: ConfigError | None = None
        self._signature = self._current_signature()

    def reload_if_changed(self) -> RuleSet | None:
        """A new, valid rule set if any file changed since the last look; else None."""
        signature = self._current_signature()
        if signature == self._signature:
            return None
        self._signature = signature
        return self._load()

    async def reload_in_thread(self) -> RuleSet | None:
        """`reload_if_changed`, parsing in a thread so the event loop keeps running."""
        signature = self._current_signature()
        if signature == self._signature:
            return None
        self._signature = signature
        return await asyncio.to_thread(self._load)

    def _load(self) -> RuleSet | None:
        try:
            loaded = load_layers(self.layers)
        except ConfigError as exc:
            self.last_error = exc
            logger.error("rule files not reloaded, the rules in force stay: %s", exc)
            return None
        self.last_error = None
        logger.info("rule files reloaded: %d rules", len(loaded.rules))
        return loaded

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        signature = []
        for _, path in layer_files(self.layers):
            try:
                stat = path.stat()
            except OSError:
                signature.append((str(path), -1, -1))
                continue
            signature.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(signature)
