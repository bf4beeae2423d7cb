"""Store-and-forward to the city platform, and the reference city receiver.

Hub side, re-exported here: the outbox and uplink, poison handling, the disk bound,
TLS and keys, enrolment, the command channel and the city's configuration layer.
The receiver side (`sync.receiver`, `sync.city_store`, `sync.pg_store`,
`sync.command_queue`, `sync.command_store`, `sync.silence`) is not imported here,
so a hub that only sends does not load it (nor psycopg).
"""

from sync.backlog import BacklogGuard, BacklogPolicy, Compaction
from sync.city_config import ApplyResult, CityConfigStore, sign_bundle
from sync.commands import CommandChannel, events_after
from sync.enrolment import enroll, load_enrolment, open_uplink
from sync.errors import (
    AuthError,
    BatchError,
    CityError,
    CityRejected,
    CityUnavailable,
    NonceCacheFull,
    SyncError,
)
from sync.keys import HubKey, KeysFile, add_key, generate_key, load_keys, newest_first, write_keys
from sync.outbox import LaneBatch, LaneState, Outbox
from sync.poison import Disposition, SetAside, Tombstone
from sync.signing import NonceCache, RequestVerifier, sign_request
from sync.tls import CertificateWatch, ClientTls, ServerTls, days_until_expiry
from sync.uplink import Uplink

__all__ = [
    "ApplyResult",
    "AuthError",
    "BacklogGuard",
    "BacklogPolicy",
    "BatchError",
    "CertificateWatch",
    "CityConfigStore",
    "CityError",
    "CityRejected",
    "CityUnavailable",
    "ClientTls",
    "CommandChannel",
    "Compaction",
    "Disposition",
    "HubKey",
    "KeysFile",
    "LaneBatch",
    "LaneState",
    "NonceCache",
    "NonceCacheFull",
    "Outbox",
    "RequestVerifier",
    "ServerTls",
    "SetAside",
    "SyncError",
    "Tombstone",
    "Uplink",
    "add_key",
    "days_until_expiry",
    "enroll",
    "events_after",
    "generate_key",
    "load_enrolment",
    "load_keys",
    "newest_first",
    "open_uplink",
    "sign_bundle",
    "sign_request",
    "write_keys",
]
