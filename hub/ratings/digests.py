"""Hash and MAC algorithms for the rating chain and citizen lookup keys, pluggable.

SHA-256 is the default. SM3 (GB/T 32905-2016) is there for halls whose
commercial-cryptography assessment (密评) requires the national algorithms; it comes
from the pure-Python ``gmssl`` package. The MAC is HMAC (RFC 2104) over the chosen
hash, so HMAC-SM3 needs nothing beyond SM3 itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from hub.ratings.errors import ChainError

HMAC_BLOCK_BYTES = 64  # both SHA-256 and SM3 work on 512-bit blocks


@dataclass(frozen=True)
class Digest:
    """One hash algorithm and the HMAC built on it."""

    name: str
    hash: Callable[[bytes], bytes]

    def mac(self, key: bytes, message: bytes) -> bytes:
        """HMAC of `message` under `key` (RFC 2104)."""
        if len(key) > HMAC_BLOCK_BYTES:
            key = self.hash(key)
        key = key.ljust(HMAC_BLOCK_BYTES, b"\0")
        inner = self.hash(bytes(b ^ 0x36 for b in key) + message)
        return self.hash(bytes(b ^ 0x5C for b in key) + inner)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sm3(data: bytes) -> bytes:
    from gmssl import sm3  # type: ignore[import-untyped]

    return bytes.fromhex(sm3.sm3_hash(list(data)))


SHA256 = Digest("sha256", _sha256)
SM3 = Digest("sm3", _sm3)
DIGESTS = {digest.name: digest for digest in (SHA256, SM3)}


def digest_named(name: str) -> Digest:
    """The algorithm called `name`; ChainError lists the known ones otherwise."""
    try:
        return DIGESTS[name]
    except KeyError as exc:
        raise ChainError(f"unknown hash algorithm {name!r}; known: {sorted(DIGESTS)}") from exc
