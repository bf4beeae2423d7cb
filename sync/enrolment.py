"""Enrolment: how this hub reaches the city, written by ``hallhub enroll``.

``hallhub enroll`` writes ``<state_dir>/enrolment.yaml`` (the hub id, the city URL,
the CA, the client certificate paths) and ``<state_dir>/city-keys.json`` (the
signing key), both mode 0600. A hall configuration without a ``city`` section
uses the enrolment if there is one. `open_uplink` turns either into an `Uplink`.

`check_city` then asks the city for this hub's status with what was written, so a
wrong URL, CA, certificate or key shows at enrolment rather than days later.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from hub.clock import Clock
from hub.config import CitySection
from hub.errors import ConfigError
from hub.journal import Journal
from hub.privatefile import write_private
from hub.yamlfile import load_model
from sync.errors import CityRejected, CityUnavailable
from sync.keys import HUB_ID_PATTERN, HubKey, KeysFile, load_keys, newest_first, write_keys
from sync.signing import sign_request
from sync.tls import ClientTls, ReloadingClientTls
from sync.uplink import SetAsideHook, Uplink

logger = logging.getLogger(__name__)

ENROLMENT_FILE = "enrolment.yaml"
KEYS_FILE = "city-keys.json"


class Enrolment(CitySection):
    """The city section plus the hub id it was issued for."""

    hub_id: str


def enroll(
    state_dir: Path,
    hub_id: str,
    city_url: str,
    ca_file: Path,
    *,
    key: HubKey | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> Path:
    """Write the enrolment and the signing key into `state_dir`; return the file."""
    problems = _check_enrolment(hub_id, city_url, ca_file, key, client_cert, client_key)
    if problems:
        raise ConfigError("hallhub enroll", problems)

    state_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "hub_id": hub_id,
        "url": city_url,
        "ca_file": str(ca_file.resolve()),
    }
    if key is not None:
        keys_path = state_dir / KEYS_FILE
        existing = load_keys(keys_path) if keys_path.exists() else {}
        write_keys(keys_path, {**existing, key.key_id: key})
        document["keys_file"] = str(keys_path.resolve())
    if client_cert is not None and client_key is not None:
        document["client_cert"] = str(client_cert.resolve())
        document["client_key"] = str(client_key.resolve())

    path = state_dir / ENROLMENT_FILE
    write_private(path, yaml.safe_dump(document, sort_keys=True).encode())
    logger.info("hub %s enrolled with %s (%s)", hub_id, city_url, path)
    return path


def load_enrolment(state_dir: Path, hub_id: str) -> Enrolment | None:
    """The enrolment in `state_dir`, or None; it must be for `hub_id`."""
    path = state_dir / ENROLMENT_FILE
    if not path.exists():
        return None
    enrolment = load_model(path, Enrolment)
    if enrolment.hub_id != hub_id:
        raise ConfigError(str(path), [f"enrolled as hub {enrolment.hub_id!r}, not {hub_id!r}"])
    return enrolment


def open_uplink(
    journal: Journal,
    city: CitySection,
    clock: Clock,
    on_set_aside: SetAsideHook | None = None,
) -> Uplink:
    """An uplink signing and connecting as `city` says."""
    tls = client_tls_source(city)

    if city.keys_file is not None:
        keys = KeysFile(city.keys_file)
        mine = [key for key in keys.keys().values() if key.hub_id == journal.hub_id]
        if not mine:
            raise ConfigError(str(city.keys_file), [f"no key for hub {journal.hub_id!r}"])
        key_id, secret = mine[0].key_id, mine[0].secret

        def key_source() -> list[HubKey]:
            return [key for key in keys.keys().values() if key.hub_id == journal.hub_id]

        source = key_source
    else:
        assert city.key_id is not None and city.secret_file is not None  # the validator's
        key_id = city.key_id
        secret = _read_secret(city.secret_file)
        source = None

    return Uplink(
        journal,
        city.url,
        key_id,
        secret,
        clock,
        batch_size=city.batch_size,
        on_set_aside=on_set_aside,
        key_source=source,
        ssl_context=tls,
    )


def client_tls_source(city: CitySection) -> Callable[[], ssl.SSLContext] | None:
    """The TLS context for reaching the city, read again when its files change."""
    if city.ca_file is None:
        return None
    source = ReloadingClientTls(ClientTls(city.ca_file, city.client_cert, city.client_key))
    source.context()  # files that do not load fail the start, as before
    return source.context


def client_context(city: CitySection) -> ssl.SSLContext | None:
    """The TLS context for reaching the city, or None for plain HTTP (tests, demo)."""
    if city.ca_file is None:
        return None
    return ClientTls(city.ca_file, city.client_cert, city.client_key).context()


def _read_secret(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"secret file unreadable or not hex: {exc}"]) from exc


def _check_enrolment(
    hub_id: str,
    city_url: str,
    ca_file: Path,
    key: HubKey | None,
    client_cert: Path | None,
    client_key: Path | None,
) -> list[str]:
    problems: list[str] = []
    if not HUB_ID_PATTERN.match(hub_id):
        problems.append(f"hub id must match {HUB_ID_PATTERN.pattern}")
    if not city_url.startswith("https://"):
        problems.append("city URL must start with https:// (the CA is the trust anchor)")
    for name, path in (("CA", ca_file), ("client certificate", client_cert)):
        if path is not None and not path.is_file():
            problems.append(f"{name} file {path} does not exist")
    if client_key is not None and not client_key.is_file():
        problems.append(f"client key file {client_key} does not exist")
    if key is None:
        # A client certificate adds mutual TLS; every request is still HMAC-signed.
        problems.append("a signing key is required (--key-id with --secret-file)")
    elif key.hub_id != hub_id:
        problems.append(f"key {key.key_id} is for hub {key.hub_id}, not {hub_id}")
    if (client_cert is None) != (client_key is None):
        problems.append("--client-cert and --client-key go together")
    return problems


def check_city(state_dir: Path, hub_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the city for this hub's status, signed and over TLS as the hub will sync.

    Returns the city's answer. Raises CityUnavailable when no answer comes (network,
    TLS, certificate) and CityRejected when the city answers no (an unknown key).
    A hub clock the city finds off is corrected once from its reply, as syncing does.
    """
    enrolment = load_enrolment(state_dir, hub_id)
    if enrolment is None or enrolment.keys_file is None:
        raise ConfigError(str(state_dir / ENROLMENT_FILE), ["no enrolment with a key to check"])
    key = newest_first(k for k in load_keys(enrolment.keys_file).values() if k.hub_id == hub_id)[0]
    url = f"{enrolment.url.rstrip('/')}/v1/hubs/{quote(hub_id, safe='')}/status"
    verify: ssl.SSLContext | bool = client_context(enrolment) or True

    with httpx.Client(verify=verify, trust_env=False, timeout=timeout) as client:
        now = time.time()
        for _ in range(2):
            request = client.build_request("GET", url)
            path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
            request.headers["Authorization"] = sign_request(
                key.key_id, key.secret, "GET", path, b"", now
            )
            try:
                response = client.send(request)
            except httpx.HTTPError as exc:
                raise CityUnavailable(f"{type(exc).__name__}: {exc}") from exc
            answer = _json_or_empty(response)
            if response.status_code != 401 or answer.get("error") != "clock_skew":
                break
            now = float(answer.get("server_time") or now)

    if response.status_code != 200:
        reason = f"{answer.get('error', 'refused')}: {answer.get('detail', response.text[:200])}"
        raise CityRejected(response.status_code, reason)
    return answer


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
