"""HTTPS to the city with a private CA, mutual TLS, live key rotation, and the alert
30 days before the hub's client certificate expires, all over real loopback sockets."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.clock import ManualClock, SystemClock
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.city_store import SQLiteBatchStore
from sync.errors import CityUnavailable
from sync.keys import HubKey, KeysFile, write_keys
from sync.receiver import BackgroundReceiver, create_app
from sync.tls import CertificateWatch, ClientTls, ServerTls, days_until_expiry
from sync.uplink import Uplink
from tests.pki import Pki, make_pki

HUB = "hall-1"
OLD = HubKey("hall-1.old", HUB, bytes.fromhex("11" * 32), created_at=1000.0)
NEW = HubKey("hall-1.new", HUB, bytes.fromhex("22" * 32), created_at=2000.0)


@dataclass
class SecureCity:
    url: str
    db_path: Path
    keys_path: Path
    store: SQLiteBatchStore
    receiver: BackgroundReceiver

    def stored(self) -> list[tuple[str, int]]:
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute("SELECT lane, seq FROM events ORDER BY id").fetchall()
        conn.close()
        return [(lane, seq) for lane, seq in rows]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def start_city(tmp_path: Path, pki: Pki, *, mutual: bool) -> SecureCity:
    keys_path = tmp_path / "city-keys.json"
    write_keys(keys_path, {OLD.key_id: OLD})
    store = SQLiteBatchStore(tmp_path / "city.db")
    app = create_app(store, KeysFile(keys_path))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tls = ServerTls(pki.server_cert, pki.server_key, pki.ca_cert if mutual else None)
    receiver = BackgroundReceiver(app, sock, tls)
    receiver.start()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    return SecureCity(url, store.path, keys_path, store, receiver)


@pytest.fixture
def city(tmp_path: Path, pki: Pki) -> Iterator[SecureCity]:
    running = start_city(tmp_path, pki, mutual=False)
    yield running
    running.receiver.stop()
    running.store.close()


@pytest.fixture
def mutual_city(tmp_path: Path, pki: Pki) -> Iterator[SecureCity]:
    running = start_city(tmp_path, pki, mutual=True)
    yield running
    running.receiver.stop()
    running.store.close()


async def append(journal: Journal, lane: Lane, count: int, start: int = 1) -> None:
    for n in range(start, start + count):
        await journal.append(
            Observation(
                f"{lane.value}-{n}",
                lane,
                "pad-1",
                "rating_pad",
                "rating",
                {"n": n},
                1_767_225_600.0 + n,
                True,
            )
        )


def uplink(journal: Journal, city: SecureCity, tls: ClientTls, **extra: object) -> Uplink:
    return Uplink(
        journal, city.url, OLD.key_id, OLD.secret, SystemClock(), ssl_context=tls.context(), **extra
    )  # type: ignore[arg-type]


async def test_batches_travel_over_https_trusting_the_private_ca(
    journal: Journal, city: SecureCity, pki: Pki
) -> None:
    """With the city's private CA as trust anchor, batches arrive over HTTPS."""
    await append(journal, Lane.RATING, 5)

    async with uplink(journal, city, ClientTls(pki.ca_cert)) as sender:
        sent = await sender.drain_once()

    assert sent == 5
    assert city.stored() == [("rating", n) for n in range(1, 6)]


async def test_a_receiver_signed_by_another_ca_is_refused(
    journal: Journal, city: SecureCity, tmp_path: Path
) -> None:
    """A server certificate from any other CA fails the handshake; nothing is sent."""
    stranger = make_pki(tmp_path / "stranger")
    await append(journal, Lane.RATING, 1)

    async with uplink(journal, city, ClientTls(stranger.ca_cert)) as sender:
        with pytest.raises(CityUnavailable) as caught:
            await sender.drain_once()

    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) or "certificate" in str(caught.value)
    assert city.stored() == []


async def test_mutual_tls_needs_the_hub_certificate(
    journal: Journal, mutual_city: SecureCity, pki: Pki
) -> None:
    """A city requiring client certificates refuses a hub without one and takes
    batches from a hub presenting a certificate signed by its CA."""
    await append(journal, Lane.ALARM, 2)

    async with uplink(journal, mutual_city, ClientTls(pki.ca_cert)) as bare:
        with pytest.raises(CityUnavailable):
            await bare.drain_once()
    with_cert = ClientTls(pki.ca_cert, pki.client_cert, pki.client_key)
    async with uplink(journal, mutual_city, with_cert) as sender:
        sent = await sender.drain_once()

    assert sent == 2
    assert mutual_city.stored() == [("alarm", 1), ("alarm", 2)]


async def test_key_rotation_loses_no_batch(
    journal: Journal, city: SecureCity, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys rotate with overlap while batches flow: the hub gets the new key before
    the city knows it (it falls back to the old key for that batch), then the city
    learns it, then both retire the old key. Every event arrives once, in order."""
    hub_keys = tmp_path / "hub-keys.json"
    write_keys(hub_keys, {OLD.key_id: OLD})
    source = KeysFile(hub_keys)
    caplog.set_level(logging.WARNING, logger="sync.uplink")

    async with uplink(
        journal, city, ClientTls(pki.ca_cert), key_source=lambda: list(source.keys().values())
    ) as sender:
        await append(journal, Lane.TICKET, 3)
        first = await sender.drain_once()
        write_keys(hub_keys, {OLD.key_id: OLD, NEW.key_id: NEW})
        await append(journal, Lane.TICKET, 3, start=4)
        during = await sender.drain_once()
        fallbacks = uplink_warnings(caplog)
        write_keys(city.keys_path, {OLD.key_id: OLD, NEW.key_id: NEW})
        await append(journal, Lane.TICKET, 3, start=7)
        overlap = await sender.drain_once()
        write_keys(city.keys_path, {NEW.key_id: NEW})
        write_keys(hub_keys, {NEW.key_id: NEW})
        await append(journal, Lane.TICKET, 3, start=10)
        after = await sender.drain_once()

    assert (first, during, overlap, after) == (3, 3, 3, 3)
    assert len(fallbacks) == 1 and "signing with hall-1.old" in fallbacks[0]
    assert uplink_warnings(caplog) == fallbacks  # the new key was accepted once known
    assert city.stored() == [("ticket", n) for n in range(1, 13)]


def uplink_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sync.uplink"]


def test_days_until_expiry_reads_the_certificate(tmp_path: Path) -> None:
    """The expiry of a client certificate is read from the PEM file itself."""
    pki = make_pki(tmp_path / "pki", client_days=12)

    days = days_until_expiry(pki.client_cert, time.time())

    assert 11.9 < days <= 12


async def test_alert_30_days_before_the_client_certificate_expires(tmp_path: Path) -> None:
    """No alert while more than 30 days remain; once within 30 days every check calls
    the alert hook with the days left (the hub's alert service counts the repeats)."""
    pki = make_pki(tmp_path / "pki", client_days=45)
    clock = ManualClock(wall=time.time())
    raised: list[tuple[str, float]] = []

    async def alert(path: Path, days: float) -> None:
        raised.append((path.name, days))

    watch = CertificateWatch(pki.client_cert, clock, alert)
    early = await watch.check()
    before = list(raised)
    clock.jump_wall(16 * 86_400)
    await watch.check()
    await watch.check()

    assert early > 30 and before == []
    assert [name for name, _ in raised] == ["client.pem", "client.pem"]
    assert all(28 < days <= 29 for _, days in raised)
