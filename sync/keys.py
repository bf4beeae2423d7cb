"""Hub signing keys: generate them and keep them in a keys file only the owner reads.

The keys file is YAML or JSON::

    {"keys": {"<key_id>": {"hub_id": "<hub>", "secret": "<hex>", "created_at": <unix s>}}}

The city receiver loads every key; a hub is given its own keys. Keys rotate with
overlap: a new key is added beside the old one, the hub signs with the newest
(highest ``created_at``), the city accepts any listed, and the old key is removed
once the city has seen the new one in use. ``created_at`` is optional (0).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub.errors import ConfigError
from hub.privatefile import write_private

logger = logging.getLogger(__name__)

SECRET_BYTES = 32
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, slots=True)
class HubKey:
    """One signing key and the hub it belongs to."""

    key_id: str
    hub_id: str
    secret: bytes = field(repr=False)
    created_at: float = 0.0


def generate_key(hub_id: str) -> tuple[str, str]:
    """A new random key for `hub_id`: its key id and its secret in hex."""
    if not HUB_ID_PATTERN.match(hub_id):
        raise ValueError(f"hub id {hub_id!r} must match {HUB_ID_PATTERN.pattern}")
    key_id = f"{hub_id}.{secrets.token_hex(4)}"
    return key_id, secrets.token_hex(SECRET_BYTES)


def load_keys(path: Path) -> dict[str, HubKey]:
    """Read and validate a keys file; warn if others can read it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read keys file: {exc.strerror}"]) from exc
    if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("keys file %s is readable by others; chmod 600 it", path)

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not YAML or JSON: {exc}"]) from exc
    return _parse_keys(str(path), document)


def write_keys(path: Path, keys: Mapping[str, HubKey]) -> None:
    """Replace the keys file atomically, created with mode 0600."""
    document = {
        "keys": {
            key.key_id: {
                "hub_id": key.hub_id,
                "secret": key.secret.hex(),
                "created_at": key.created_at,
            }
            for key in keys.values()
        }
    }
    payload = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    write_private(path, payload)
    logger.info("wrote %d keys to %s", len(keys), path)


def add_key(path: Path, hub_id: str, created_at: float | None = None) -> HubKey:
    """Generate a key for `hub_id` and add it to the keys file (created if missing)."""
    keys = load_keys(path) if path.exists() else {}
    key_id, secret_hex = generate_key(hub_id)
    key = HubKey(
        key_id=key_id,
        hub_id=hub_id,
        secret=bytes.fromhex(secret_hex),
        created_at=time.time() if created_at is None else created_at,
    )
    write_keys(path, {**keys, key_id: key})
    return key


def _parse_keys(file: str, document: Any) -> dict[str, HubKey]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), dict):
        raise ConfigError(file, ['top level must be a mapping with a "keys" mapping'])

    keys: dict[str, HubKey] = {}
    problems: list[str] = []
    for key_id, entry in document["keys"].items():
        key = _parse_entry(str(key_id), entry, problems)
        if key is not None:
            keys[key.key_id] = key
    if problems:
        raise ConfigError(file, problems)
    return keys


def _parse_entry(key_id: str, entry: Any, problems: list[str]) -> HubKey | None:
    where = f"keys.{key_id}"
    if not KEY_ID_PATTERN.match(key_id):
        problems.append(f"{where}: key id must match {KEY_ID_PATTERN.pattern}")
        return None
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a mapping with hub_id and secret")
        return None
    hub_id, secret_hex = entry.get("hub_id"), entry.get("secret")
    if not isinstance(hub_id, str) or not HUB_ID_PATTERN.match(hub_id):
        problems.append(f"{where}.hub_id: must be a string matching {HUB_ID_PATTERN.pattern}")
        return None
    try:
        secret = bytes.fromhex(secret_hex) if isinstance(secret_hex, str) else b""
    except ValueError:
        secret = b""
    if len(secret) < 16:
        # The secret itself never goes into a message.
        problems.append(f"{where}.secret: must be hex of at least 16 bytes")
        return None
    created_at = entry.get("created_at", 0.0)
    if not isinstance(created_at, int | float) or isinstance(created_at, bool):
        problems.append(f"{where}.created_at: must be Unix seconds")
        return None
    return HubKey(key_id=key_id, hub_id=hub_id, secret=secret, created_at=float(created_at))


def newest_first(keys: Iterable[HubKey]) -> list[HubKey]:
    """Keys ordered for signing: the newest first, ties broken by key id."""
    return sorted(keys, key=lambda key: (-key.created_at, key.key_id))


class KeysFile:
    """A keys file read again whenever it changes on disk, so keys rotate live."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, HubKey] = {}

    def keys(self) -> dict[str, HubKey]:
        """The keys as the file holds them now; a broken rewrite keeps the last good set."""
        try:
            status = os.stat(self.path)
        except OSError as exc:
            if self._stamp is None:
                raise ConfigError(str(self.path), [f"cannot read keys file: {exc}"]) from exc
            return self._keys
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            self._reload(stamp)
        return self._keys

    def _reload(self, stamp: tuple[int, int]) -> None:
        try:
            keys = load_keys(self.path)
        except ConfigError:
            if self._stamp is None:
                raise
            logger.exception("keys file %s changed but is invalid; keeping the old keys", self.path)
            return
        if self._stamp is not None:
            logger.info("keys file %s reloaded: %d keys", self.path, len(keys))
        self._stamp = stamp
        self._keys = keys
