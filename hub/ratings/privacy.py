"""Citizen identifiers: never kept in clear; looked up by a keyed MAC; names masked.

A phone number or ID number a rating channel hands in (an SMS reply, an app rating)
is replaced by a lookup key at once: an HMAC under a secret of this hub, kept in
``<state_dir>/citizen-lookup-key`` (mode 0600). A plain hash would not do: there
are only about 10^11 phone numbers, so anyone with the file could hash them all and
read every number back. With the key, the same citizen still matches the same key
(a second rating of theirs can be found) without the number being on disk.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

from hub.privatefile import write_private
from hub.ratings.digests import Digest

logger = logging.getLogger(__name__)

KEY_FILE = "citizen-lookup-key"
KEY_BYTES = 32
# The identifiers a channel may hand in, and how each is written before keying.
IDENTIFIER_KINDS = ("phone", "id_number")
MASK = "*"


class CitizenKeys:
    """Keyed lookup keys for citizen identifiers, with this hub's secret."""

    def __init__(self, secret: bytes, digest: Digest) -> None:
        self._secret = secret
        self._digest = digest

    @classmethod
    def for_state_dir(cls, state_dir: Path, digest: Digest) -> CitizenKeys:
        """The hub's keys, creating its secret (0600) on first use."""
        path = state_dir / KEY_FILE
        if not path.exists():
            write_private(path, secrets.token_hex(KEY_BYTES))
            logger.info("created the citizen lookup key %s", path)
        return cls(bytes.fromhex(path.read_text(encoding="ascii").strip()), digest)

    def lookup_key(self, kind: str, value: str) -> str:
        """The lookup key of one identifier: the same citizen always gets the same key."""
        if kind not in IDENTIFIER_KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}")
        message = f"{kind}\n{normalise(kind, value)}".encode()
        return self._digest.mac(self._secret, message).hex()


def normalise(kind: str, value: str) -> str:
    """One spelling per identifier: digits only for a phone (no +86), upper-case X for IDs."""
    if kind == "phone":
        digits = re.sub(r"\D", "", value)
        return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits
    return value.strip().upper()


def mask_name(name: str) -> str:
    """A name as call screens show it: the first character, the rest masked (张*, 欧**)."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + MASK * max(len(name) - 1, 1)
