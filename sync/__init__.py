"""Store-and-forward to the city platform, and the reference city receiver.

The receiver (`sync.receiver`) is not imported here, so a hub that only sends
does not load it.
"""

from sync.errors import (
    AuthError,
    BatchError,
    CityError,
    CityRejected,
    CityUnavailable,
    NonceCacheFull,
    SyncError,
)
from sync.keys import HubKey, add_key, generate_key, load_keys, write_keys
from sync.outbox import LaneBatch, LaneState, Outbox
from sync.signing import NonceCache, RequestVerifier, sign_request
from sync.uplink import Uplink

__all__ = [
    "AuthError",
    "BatchError",
    "CityError",
    "CityRejected",
    "CityUnavailable",
    "HubKey",
    "LaneBatch",
    "LaneState",
    "NonceCache",
    "NonceCacheFull",
    "Outbox",
    "RequestVerifier",
    "SyncError",
    "Uplink",
    "add_key",
    "generate_key",
    "load_keys",
    "sign_request",
    "write_keys",
]
