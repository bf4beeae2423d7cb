"""Request signing, nonce memory and the keys file, without any network."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from hub.errors import ConfigError
from sync.errors import AuthError, NonceCacheFull
from sync.keys import HubKey, add_key, generate_key, load_keys, write_keys
from sync.signing import (
    NonceCache,
    RequestVerifier,
    compute_signature,
    parse_authorization,
    sign_request,
)

NOW = 1_767_225_600.0
PATH = "/v1/hubs/hall-1/batches"
BODY = b"\x1f\x8b compressed bytes"


@pytest.fixture
def key() -> HubKey:
    return HubKey(key_id="hall-1.k1", hub_id="hall-1", secret=bytes(range(32)))


@pytest.fixture
def verifier(key: HubKey) -> RequestVerifier:
    return RequestVerifier({key.key_id: key})


def _refusal(
    verifier: RequestVerifier,
    header: str | None,
    *,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    now: float = NOW,
) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(method, path, body, header, now)
    return caught.value.reason


def test_signed_request_verifies(key: HubKey, verifier: RequestVerifier) -> None:
    """A request signed with the key verifies and names that key."""
    header = sign_request(key.key_id, key.secret, "POST", PATH, BODY, NOW)

    assert verifier.verify("POST", PATH, BODY, header, NOW + 1) == key


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", PATH, BODY), ("POST", "/v1/hubs/hall-2/batches", BODY), ("POST", PATH, b"x")],
)
def test_any_change_breaks_the_signature(
    key: HubKey, verifier: RequestVerifier, method: str, path: str, body: bytes
) -> None:
    """Method, path and body are all covered by the signature."""
    header = sign_request(key.key_id, key.secret, "POST", PATH, BODY, NOW)

    assert _refusal(verifier, header, method=method, path=path, body=body) == "bad_signature"


def test_wrong_secret_and_unknown_key_are_refused(key: HubKey, verifier: RequestVerifier) -> None:
    """Signing with another secret, or under a key id the receiver lacks, fails."""
    forged = sign_request(key.key_id, b"another secret of 32 bytes......", "POST", PATH, BODY, NOW)
    unknown = sign_request("hall-9.k9", key.secret, "POST", PATH, BODY, NOW)

    assert _refusal(verifier, forged) == "bad_signature"
    assert _refusal(verifier, unknown) == "unknown_key"


def test_timestamp_window_is_300_seconds(key: HubKey, verifier: RequestVerifier) -> None:
    """A timestamp 300 s off passes; 301 s off is refused as clock skew."""
    assert verifier.verify(
        "POST", PATH, BODY, sign_request(key.key_id, key.secret, "POST", PATH, BODY, NOW), NOW + 300
    )
    late = sign_request(key.key_id, key.secret, "POST", PATH, BODY, NOW)
    early = sign_request(key.key_id, key.secret, "POST", PATH, BODY, NOW + 301)

    assert _refusal(verifier, late, now=NOW + 301) == "clock_skew"
    assert _refusal(verifier, early) == "clock_skew"


def test_replayed_request_is_refused(key: HubKey, verifier: RequestVerifier) -> None:
    """The same signed request sent twice inside the window is refused the second time."""
    header = sign_request(key.key_id, key.secret, "POST", PATH, BODY, NOW)
    verifier.verify("POST", PATH, BODY, header, NOW)

    assert _refusal(verifier, header, now=NOW + 10) == "replay"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "HALLHUB-HMAC-SHA256 key_id=a,ts=1,nonce=00112233445566778899",
        "HALLHUB-HMAC-SHA256 key_id=a,ts=x,nonce=0011223344556677,sig=" + "0" * 64,
        "HALLHUB-HMAC-SHA256 key_id=a,ts=1,nonce=short,sig=" + "0" * 64,
        "HALLHUB-HMAC-SHA256 key_id=a,ts=1,nonce=0011223344556677,sig=zz",
        "HALLHUB-HMAC-SHA256 key_id=a,key_id=b,ts=1,nonce=0011223344556677,sig=" + "0" * 64,
    ],
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    """Anything but the exact header shape is refused before any key lookup."""
    with pytest.raises(AuthError) as caught:
        parse_authorization(header)

    assert caught.value.reason == "malformed"


def test_signature_is_over_the_documented_string(key: HubKey) -> None:
    """The header carries the HMAC of method, path, ts, nonce and body digest."""
    header = sign_request(key.key_id, key.secret, "POST", PATH, BODY, NOW + 0.9)
    credentials = parse_authorization(header)

    assert credentials.key_id == key.key_id
    assert credentials.ts == int(NOW)
    assert credentials.signature == compute_signature(
        key.secret, "POST", PATH, int(NOW), credentials.nonce, BODY
    )


def test_nonce_cache_forgets_after_expiry_and_is_bounded() -> None:
    """A nonce is refused until it expires, then accepted; a full cache refuses new ones."""
    cache = NonceCache(max_entries=2)

    assert cache.remember("a", expires_at=100, now=0)
    assert not cache.remember("a", expires_at=100, now=50)
    assert cache.remember("a", expires_at=300, now=100)
    assert cache.remember("b", expires_at=300, now=100)
    with pytest.raises(NonceCacheFull):
        cache.remember("c", expires_at=300, now=100)
    assert cache.remember("c", expires_at=500, now=300)
    assert len(cache) == 1


def test_generated_keys_are_written_0600_and_load_back(tmp_path: Path) -> None:
    """Keys written to a file are private to the owner and read back unchanged."""
    path = tmp_path / "city" / "keys.json"
    first = add_key(path, "hall-1")
    second = add_key(path, "hall-2")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(path) == {first.key_id: first, second.key_id: second}
    assert first.key_id.startswith("hall-1.")
    assert len(first.secret) == 32
    assert repr(first.secret) not in repr(first)


def test_keys_file_may_be_yaml(tmp_path: Path) -> None:
    """A hand-written YAML keys file loads like the JSON one."""
    key_id, secret_hex = generate_key("hall-3")
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  {key_id}:\n    hub_id: hall-3\n    secret: '{secret_hex}'\n")
    path.chmod(0o600)

    assert load_keys(path)[key_id].secret == bytes.fromhex(secret_hex)


def test_bad_keys_file_names_the_field(tmp_path: Path) -> None:
    """Validation errors name the file and the key at fault."""
    path = tmp_path / "keys.json"
    document = {"keys": {"k1": {"hub_id": "hall-1", "secret": "abcd"}, "k2": {"secret": "00"}}}
    path.write_text(json.dumps(document))
    path.chmod(0o600)

    with pytest.raises(ConfigError) as caught:
        load_keys(path)

    assert caught.value.file == str(path)
    assert any("keys.k1.secret" in problem for problem in caught.value.problems)
    assert any("keys.k2.hub_id" in problem for problem in caught.value.problems)


def test_readable_keys_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A keys file others can read still loads, with a warning to fix its mode."""
    path = tmp_path / "keys.json"
    write_keys(path, {})
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="sync.keys"):
        assert load_keys(path) == {}

    assert "chmod 600" in caplog.text
