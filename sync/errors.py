"""Errors raised by the sync package.

HallhubError (hub.errors)
└── SyncError               something went wrong between the hub and the city
    ├── AuthError           a signed request was refused; carries the reason code
    ├── NonceCacheFull      the receiver remembers too many nonces to accept more
    ├── BatchError          a batch body is malformed; carries what is wrong
    ├── CityError           the city did not acknowledge a batch
    │   ├── CityUnavailable 5xx, timeout or refused connection: retry with backoff
    │   └── CityRejected    a 4xx reply: status and reason; retried slowly
    ├── StoreUnavailable    the receiver cannot reach its database (PostgreSQL)
    ├── CommandQueueFull    a hub has as many pending commands as the receiver holds
    ├── QuarantineError     no open quarantined event at that lane and seq
    └── StatusUnavailable   ``hallhub sync status`` cannot ask the running hub
"""

from __future__ import annotations

from hub.errors import HallhubError


class SyncError(HallhubError):
    """Base class of every sync error."""


class AuthError(SyncError):
    """A request's signature, key, timestamp or nonce was refused.

    `reason` is a short code the receiver also puts in its 401 reply:
    ``malformed``, ``unknown_key``, ``bad_signature``, ``clock_skew``, ``replay``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class NonceCacheFull(SyncError):
    """The nonce cache is at its bound; new requests are refused until nonces expire."""


class BatchError(SyncError):
    """A batch body could not be accepted as it is."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class CityError(SyncError):
    """The city platform did not acknowledge a batch."""


class CityUnavailable(CityError):
    """The city could not be reached or failed (5xx, timeout, refused connection)."""


class CityRejected(CityError):
    """The city refused the request with a 4xx status."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"HTTP {status}: {reason}")


class StoreUnavailable(SyncError):
    """The receiver's database could not be reached or set up."""


class CommandQueueFull(SyncError):
    """The hub already has `limit` commands pending; the city must wait for replies."""

    def __init__(self, hub_id: str, limit: int) -> None:
        self.hub_id = hub_id
        self.limit = limit
        super().__init__(f"hub {hub_id} already has {limit} pending commands")


class StatusUnavailable(SyncError):
    """The hub's console could not be asked (not running, wrong URL or token)."""


class QuarantineError(SyncError):
    """There is no open quarantined event at the lane and seq a person named."""
