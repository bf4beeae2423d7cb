"""Configuration the city sends down: signed, versioned bundles, applied atomically.

A bundle is ``{"version", "files", "key_id", "signature"}``. ``files`` maps a
relative name to YAML text; the names allowed, and how each is checked:

* ``rules/<name>.yaml``: a rule file (`rules.spec.RuleFile`); the whole layering
  (pack, city, hall; overrides of rules by id) is checked when the hub starts on it;
* ``devices/<name>.yaml``: a device model (`devices.profiles.load_model_file`);
* ``calendar.yaml``: the city's calendar baseline (year tables, closures), checked
  with the hall calendar's schema (`hub.calendar.CalendarSettings`);
* ``schedules.yaml``: opening hours (`hub.calendar.OpeningSchedule`: time zone,
  weekday and Saturday hours, the midday window). With ``calendar.yaml`` it makes
  the city's calendar (`city_calendar`); a setting stated in both is refused. The
  hall's own calendar file sits on top;
* ``windows.yaml``: service categories and window assignments
  (`hub.tickets.settings.WindowAssignments`); the hall's ``tickets:`` section sits
  on top, window by window (`city_windows`).

The signature is HMAC-SHA256, with one of the hub's own keys, over the canonical
JSON of ``{"version", "files"}``: a bundle altered on the way is refused even if
TLS were broken.

On disk, under ``<state_dir>/city-config/``::

    versions/<version>/...   one folder per version, written whole before use
    current  -> versions/<v> symlink, switched atomically (rename over it)
    previous -> versions/<v> what `current` pointed to before the last switch

`apply` stages and validates the bundle, switches ``current``, then calls the
hub's start hook on the new folder; if that raises, ``current`` goes back to the
old version. Either way the reply names the version that is active.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from devices.profiles import load_model_file
from hub.calendar import (
    CalendarSettings,
    load_calendar_settings,
    load_opening_schedule,
    with_opening_schedule,
)
from hub.errors import ConfigError
from hub.tickets.settings import WindowAssignments, load_window_assignments
from hub.yamlfile import describe_errors, read_yaml
from rules.spec import RuleFile
from sync.keys import HubKey

logger = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FILE_PATTERN = re.compile(
    r"^(rules/[A-Za-z0-9_-]{1,64}\.yaml|devices/[A-Za-z0-9_-]{1,64}\.yaml"
    r"|schedules\.yaml|windows\.yaml|calendar\.yaml)$"
)
MAX_FILES = 200
MAX_FILE_BYTES = 1024 * 1024

StartHook = Callable[[Path], None]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What became of a bundle: ``active``, ``rejected`` or ``rolled_back``."""

    status: str
    active_version: str | None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The reply sent back to the city."""
        return {
            "status": self.status,
            "active_version": self.active_version,
            "problems": self.problems,
        }


def canonical_bundle(version: str, files: Mapping[str, str], issued_at: float) -> bytes:
    """The bytes a bundle's signature covers."""
    document = {"version": version, "files": dict(files), "issued_at": issued_at}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_bundle(
    key: HubKey, version: str, files: Mapping[str, str], issued_at: float
) -> dict[str, Any]:
    """A signed bundle, as the city queues it for a hub; `issued_at` is the city's time."""
    document = canonical_bundle(version, files, issued_at)
    return {
        "version": version,
        "files": dict(files),
        "issued_at": issued_at,
        "key_id": key.key_id,
        "signature": hmac.new(key.secret, document, hashlib.sha256).hexdigest(),
    }


class CityConfigStore:
    """The city's configuration layers on this hub's disk."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "city-config"
        self._versions = self.root / "versions"

    def active_version(self) -> str | None:
        """The version `current` points to, or None before the first bundle."""
        return self._pointed(self.root / "current")

    def active_dir(self) -> Path | None:
        """The folder of the active version."""
        version = self.active_version()
        return None if version is None else self._versions / version

    def apply(self, bundle: Any, keys: Mapping[str, HubKey], start: StartHook) -> ApplyResult:
        """Validate, stage, switch to and start `bundle`; roll back if start fails."""
        prepared = self.prepare(bundle, keys)
        if isinstance(prepared, ApplyResult):
            return prepared
        return self.switch(prepared, start)

    def prepare(
        self, bundle: Any, keys: Mapping[str, HubKey], check: StartHook | None = None
    ) -> ApplyResult | str:
        """Validate and stage `bundle`; return its version, ready to `switch` to.

        `check` says, by raising, whether the hub could start on the staged version;
        a version it refuses is answered ``rolled_back`` without ever being switched
        to. Nothing here touches what the hub runs, so it may run in a thread (a large
        bundle takes seconds to parse). Returns the answer instead when there is
        nothing to switch to.
        """
        try:
            version, files, issued_at = _checked_bundle(bundle, keys)
        except ConfigError as exc:
            logger.warning("configuration bundle refused: %s", exc)
            return ApplyResult("rejected", self.active_version(), exc.problems)
        in_force = self._issued_at(self.active_version())
        if in_force is not None and issued_at < in_force:
            problem = "issued before the configuration in force: a replayed bundle is refused"
            logger.warning("configuration %s refused: %s", version, problem)
            return ApplyResult("rejected", self.active_version(), [problem])
        if version == self.active_version():
            if _folder_files(self._versions / version) != files:
                problem = "this version is active with other files; use a new version"
                return ApplyResult("rejected", version, [problem])
            return ApplyResult("active", version)

        try:
            self._stage(version, files)
            self._versions.joinpath(f"{version}.issued").write_text(repr(issued_at))
        except ConfigError as exc:
            logger.warning("configuration %s refused: %s", version, exc)
            return ApplyResult("rejected", self.active_version(), exc.problems)
        if check is not None:
            try:
                check(self._versions / version)
            except (ConfigError, OSError, ValueError) as exc:
                logger.error("hub cannot start on configuration %s: %s", version, exc)
                return ApplyResult("rolled_back", self.active_version(), [str(exc)])
        return version

    def roll_back(self) -> str | None:
        """Point `current` back at `previous`; return the version now active."""
        previous = self._pointed(self.root / "previous")
        if previous is None:
            (self.root / "current").unlink(missing_ok=True)
        else:
            self._point("current", previous)
        logger.warning("city configuration rolled back to %s", previous or "none")
        return previous

    # -- steps -------------------------------------------------------------------

    def _stage(self, version: str, files: Mapping[str, str]) -> None:
        """Write `files` whole as the folder of `version`, validated before it is used.

        A folder left by an earlier push of the same version (one rolled back, say) is
        replaced by the new files, unless that version is the previous one, which a
        rollback must find unchanged.
        """
        target = self._versions / version
        if target.exists() and _folder_files(target) == dict(files):
            _validate_folder(target)
            return
        if target.exists() and version == self._pointed(self.root / "previous"):
            raise ConfigError(
                f"bundle {version}",
                ["this version is kept, with other files, to roll back to; use a new version"],
            )
        self._versions.mkdir(parents=True, exist_ok=True)
        staging = self._versions / f".staging-{secrets.token_hex(4)}"
        try:
            for name, text in files.items():
                path = staging / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            _validate_folder(staging)
            if target.exists():
                shutil.rmtree(target)
                logger.info("configuration %s pushed again with other files", version)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def switch(self, version: str, start: StartHook) -> ApplyResult:
        """Make the staged `version` current and start on it; roll back if start fails."""
        old = self.active_version()
        old_previous = self._pointed(self.root / "previous")
        # `previous` first: a crash between the two renames leaves both on the old
        # version, never `previous` on one older than what ran.
        if old is not None:
            self._point("previous", old)
        self._point("current", version)
        try:
            start(self._versions / version)
        except (ConfigError, OSError, ValueError) as exc:
            logger.error("hub failed to start on configuration %s: %s; rolling back", version, exc)
            self._restore(old, old_previous)
            return ApplyResult("rolled_back", old, [str(exc)])
        logger.info("city configuration %s active (was %s)", version, old or "none")
        return ApplyResult("active", version)

    def _restore(self, current: str | None, previous: str | None) -> None:
        """Point `current` and `previous` back where they were before a switch."""
        for name, version in (("current", current), ("previous", previous)):
            if version is None:
                self._unpoint(name)
            else:
                self._point(name, version)

    def _issued_at(self, version: str | None) -> float | None:
        """When the city issued `version`, as its signed bundle said; None if unknown."""
        if version is None:
            return None
        try:
            return float(self._versions.joinpath(f"{version}.issued").read_text())
        except (OSError, ValueError):
            return None  # a version from before bundles carried the time

    def _pointed(self, link: Path) -> str | None:
        try:
            target = os.readlink(link)
        except OSError:
            return None
        return Path(target).name

    def _point(self, name: str, version: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".{name}-{secrets.token_hex(4)}"
        os.symlink(Path("versions") / version, temporary)
        os.replace(temporary, self.root / name)

    def _unpoint(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


def _checked_bundle(bundle: Any, keys: Mapping[str, HubKey]) -> tuple[str, dict[str, str], float]:
    if not isinstance(bundle, dict):
        raise ConfigError("bundle", ["must be a mapping"])
    version, files = bundle.get("version"), bundle.get("files")
    issued_at = bundle.get("issued_at")
    problems: list[str] = []
    if not _is_time(issued_at):
        problems.append("issued_at must be the city's time (seconds since the epoch)")
    # fullmatch: with match, `$` also accepts a name followed by a newline.
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        problems.append(f"version must match {VERSION_PATTERN.pattern}")
    if not isinstance(files, dict) or not files or len(files) > MAX_FILES:
        problems.append(f"files must map 1 to {MAX_FILES} names to YAML text")
    if problems:
        raise ConfigError("bundle", problems)
    assert isinstance(version, str) and isinstance(files, dict)
    assert isinstance(issued_at, int | float)

    for name, text in files.items():
        if not isinstance(name, str) or not FILE_PATTERN.fullmatch(name):
            problems.append(f"file name {name!r} is not one a bundle may hold")
        elif not isinstance(text, str) or len(text.encode()) > MAX_FILE_BYTES:
            problems.append(f"{name}: must be text of at most {MAX_FILE_BYTES} bytes")
    if problems:
        raise ConfigError(f"bundle {version}", problems)
    _check_signature(bundle, version, files, float(issued_at), keys)
    return version, files, float(issued_at)


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_signature(
    bundle: dict[str, Any],
    version: str,
    files: dict[str, str],
    issued_at: float,
    keys: Mapping[str, HubKey],
) -> None:
    key = keys.get(str(bundle.get("key_id")))
    signature = bundle.get("signature")
    if key is None or not isinstance(signature, str):
        raise ConfigError(f"bundle {version}", ["not signed with a key of this hub"])
    document = canonical_bundle(version, files, issued_at)
    expected = hmac.new(key.secret, document, hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature):
        raise ConfigError(f"bundle {version}", ["signature does not match"])


def _folder_files(folder: Path) -> dict[str, str]:
    """The files of a version folder, by the names a bundle gives them."""
    return {
        path.relative_to(folder).as_posix(): path.read_text(encoding="utf-8")
        for path in folder.rglob("*")
        if path.is_file()
    }


def city_calendar(folder: Path) -> CalendarSettings | None:
    """The calendar a version's ``calendar.yaml`` and ``schedules.yaml`` make together."""
    calendar_file, schedule_file = folder / "calendar.yaml", folder / "schedules.yaml"
    calendar = load_calendar_settings(calendar_file) if calendar_file.exists() else None
    schedule = load_opening_schedule(schedule_file) if schedule_file.exists() else None
    return with_opening_schedule(calendar, schedule, "calendar.yaml and schedules.yaml")


def city_windows(folder: Path) -> WindowAssignments | None:
    """A version's window assignments, or None when it has no ``windows.yaml``."""
    path = folder / "windows.yaml"
    return load_window_assignments(path) if path.exists() else None


def _validate_folder(folder: Path) -> None:
    """Check every file of a staged version with the schema that fits it."""
    problems: list[str] = []
    for path in sorted(p for p in folder.rglob("*.yaml") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        try:
            _validate_file(name, path)
        except ConfigError as exc:
            problems.extend(f"{name}: {problem}" for problem in exc.problems)
    if not problems:
        try:
            city_calendar(folder)
        except ConfigError as exc:
            problems.extend(f"{exc.file}: {problem}" for problem in exc.problems)
    if problems:
        raise ConfigError(folder.name, problems)


def _validate_file(name: str, path: Path) -> None:
    if name.startswith("rules/"):
        data, lines = read_yaml(path)
        try:
            RuleFile.model_validate({} if data is None else data)
        except pydantic.ValidationError as exc:
            raise ConfigError(name, describe_errors(exc, lines)) from exc
    elif name.startswith("devices/"):
        load_model_file(path)
    elif name == "calendar.yaml":
        load_calendar_settings(path)
    elif name == "schedules.yaml":
        load_opening_schedule(path)
    elif name == "windows.yaml":
        load_window_assignments(path)
    else:
        raise ConfigError(name, ["not a file a bundle may hold"])
