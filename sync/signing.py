"""HMAC-SHA256 request signing between a hub and the city, and its verification.

A signed request carries::

    Authorization: HALLHUB-HMAC-SHA256 key_id=<id>,ts=<unix s>,nonce=<hex>,sig=<hex>

where ``sig`` is HMAC-SHA256 with the key's secret over the string
``method \\n path \\n ts \\n nonce \\n sha256-hex(body as sent)``. The receiver
refuses an unknown key, a wrong signature, a timestamp more than `WINDOW_SECONDS`
away from its own clock and a nonce it has already seen inside that window.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from sync.errors import AuthError, NonceCacheFull
from sync.keys import HubKey

logger = logging.getLogger(__name__)

SCHEME = "HALLHUB-HMAC-SHA256"
WINDOW_SECONDS = 300
NONCE_PATTERN = re.compile(r"^[0-9a-f]{16,64}$")
SIGNATURE_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("key_id", "ts", "nonce", "sig")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The fields of an Authorization header."""

    key_id: str
    ts: int
    nonce: str
    signature: str


def string_to_sign(method: str, path: str, ts: int, nonce: str, body: bytes) -> bytes:
    """The exact bytes the signature covers."""
    body_digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{ts}\n{nonce}\n{body_digest}".encode()


def compute_signature(
    secret: bytes, method: str, path: str, ts: int, nonce: str, body: bytes
) -> str:
    """The hex HMAC-SHA256 of a request."""
    message = string_to_sign(method, path, ts, nonce, body)
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_request(
    key_id: str, secret: bytes, method: str, path: str, body: bytes, now: float
) -> str:
    """An Authorization header value for a request sent at receiver time `now`."""
    ts = int(now)
    nonce = secrets.token_hex(16)
    signature = compute_signature(secret, method, path, ts, nonce, body)
    return f"{SCHEME} key_id={key_id},ts={ts},nonce={nonce},sig={signature}"


def parse_authorization(header: str | None) -> Credentials:
    """Split an Authorization header into its fields, or raise `AuthError`."""
    if not header:
        raise AuthError("malformed", "no Authorization header")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise AuthError("malformed", f"scheme must be {SCHEME}")

    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator or name in fields:
            raise AuthError("malformed", f"bad field {name!r}")
        fields[name] = value
    if tuple(sorted(fields)) != tuple(sorted(_FIELDS)):
        raise AuthError("malformed", f"fields must be exactly {', '.join(_FIELDS)}")

    if not fields["ts"].isdigit():
        raise AuthError("malformed", "ts must be unix seconds")
    if not NONCE_PATTERN.match(fields["nonce"]):
        raise AuthError("malformed", "nonce must be 16 to 64 lowercase hex digits")
    if not SIGNATURE_PATTERN.match(fields["sig"]):
        raise AuthError("malformed", "sig must be 64 lowercase hex digits")
    return Credentials(fields["key_id"], int(fields["ts"]), fields["nonce"], fields["sig"])


class NonceCache:
    """Nonces seen recently, each forgotten once its timestamp can no longer pass."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._expiry)

    def remember(self, nonce: str, expires_at: float, now: float) -> bool:
        """Record `nonce` until `expires_at`; False if it is already remembered."""
        self._forget_expired(now)
        if nonce in self._expiry:
            return False
        if len(self._expiry) >= self._max_entries:
            raise NonceCacheFull(f"{len(self._expiry)} nonces live; try again later")

        self._expiry[nonce] = expires_at
        self._order.append((expires_at, nonce))
        return True

    def _forget_expired(self, now: float) -> None:
        # Expiries are appended in roughly rising order; one out of order only
        # stays a little longer than it must, which is harmless.
        while self._order and self._order[0][0] <= now:
            _, nonce = self._order.popleft()
            self._expiry.pop(nonce, None)


class RequestVerifier:
    """Checks signed requests against a set of hub keys."""

    def __init__(
        self,
        keys: Mapping[str, HubKey],
        nonces: NonceCache | None = None,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self._keys = dict(keys)
        self._nonces = nonces if nonces is not None else NonceCache()
        self._window = window

    def keys(self) -> dict[str, HubKey]:
        """The keys accepted now."""
        return dict(self._keys)

    def replace_keys(self, keys: Mapping[str, HubKey]) -> None:
        """Accept exactly `keys` from now on (a rotation added or retired some)."""
        self._keys = dict(keys)

    def verify(
        self, method: str, path: str, body: bytes, authorization: str | None, now: float
    ) -> HubKey:
        """The key that signed the request, or `AuthError` saying why it is refused."""
        credentials = parse_authorization(authorization)
        key = self._keys.get(credentials.key_id)
        if key is None:
            raise AuthError("unknown_key", f"no key {credentials.key_id!r}")
        if abs(credentials.ts - now) > self._window:
            raise AuthError("clock_skew", f"ts is {credentials.ts - now:+.0f} s from receiver")

        expected = compute_signature(
            key.secret, method, path, credentials.ts, credentials.nonce, body
        )
        if not hmac.compare_digest(expected, credentials.signature):
            raise AuthError("bad_signature", f"signature does not match key {key.key_id!r}")

        nonce_key = f"{key.key_id}:{credentials.nonce}"
        if not self._nonces.remember(nonce_key, credentials.ts + self._window, now):
            raise AuthError("replay", "nonce already used")
        return key
