"""Mutual TLS: a renewed client certificate is the one the hub presents.

Real parts only: a private CA made for the test, the reference receiver serving
HTTPS on loopback and requiring client certificates, the hub's own `open_uplink` and
`CertificateWatch`, as the hub service wires them.
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import socket
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from hub.clock import SystemClock
from hub.config import CitySection
from hub.events import Lane, Observation
from hub.journal import Journal
from sync.city_store import SQLiteBatchStore
from sync.enrolment import open_uplink
from sync.errors import CityError
from sync.keys import HubKey, write_keys
from sync.receiver import BackgroundReceiver, create_app
from sync.tls import CertificateWatch, ServerTls
from tests.pki import _issue, _name, _write_key

HUB = "hall-1"
KEY = HubKey("hall-1.k1", HUB, bytes.fromhex("44" * 32))
LIFETIME_SECONDS = 4.0


async def test_a_renewed_client_certificate_is_the_one_presented(tmp_path: Path) -> None:
    """The hub's client certificate is about to expire; hall IT puts the renewed one
    (issued by the city, whose receiver trusts its CA) in its place. The expiry watch
    reads the file, sees a year left and raises no alert. But the uplink loaded its
    TLS context once, at start, and kept presenting the old certificate: once that
    expired, every new connection was refused and the hub stopped syncing until it was
    restarted, with no alert left to say why."""
    ca = CityCa(tmp_path / "pki")
    expiring = ca.client("old", LIFETIME_SECONDS / 86_400)
    renewed = ca.client("renewed", 365)

    keys = tmp_path / "keys.json"
    write_keys(keys, {KEY.key_id: KEY})
    store = SQLiteBatchStore(tmp_path / "city.db")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tls = ServerTls(ca.server_cert, ca.server_key, ca.cert)
    receiver = BackgroundReceiver(create_app(store, {KEY.key_id: KEY}), sock, tls)
    receiver.start()

    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    cert, key = hub_dir / "client.pem", hub_dir / "client-key.pem"
    shutil.copy(expiring[0], cert)
    shutil.copy(expiring[1], key)
    city = CitySection.model_validate(
        {
            "url": f"https://127.0.0.1:{sock.getsockname()[1]}",
            "keys_file": str(keys),
            "ca_file": str(ca.cert),
            "client_cert": str(cert),
            "client_key": str(key),
        }
    )
    alerts: list[float] = []

    async def alert(path: Path, days: float) -> None:
        alerts.append(days)

    journal = Journal(tmp_path / "hub.db", HUB)
    journal.open()
    started = time.monotonic()
    try:
        uplink = open_uplink(journal, city, SystemClock())
        watch = CertificateWatch(cert, SystemClock(), alert)
        await journal.append(reading(1))
        assert await uplink.drain_once() == 1

        shutil.copy(renewed[0], cert)  # the renewal
        shutil.copy(renewed[1], key)
        days_left = await watch.check()
        await asyncio.sleep(max(0.0, LIFETIME_SECONDS + 6.0 - (time.monotonic() - started)))

        await journal.append(reading(2))
        errors: list[str] = []
        for _ in range(3):
            try:
                await uplink.drain_once()
                break
            except CityError as exc:
                errors.append(str(exc))
        acked = uplink.status()["telemetry"]["acked_seq"]
        await uplink.aclose()
        restarted = open_uplink(journal, city, SystemClock())  # as after a hub restart
        restarted_acked = await restarted.drain_once()
        await restarted.aclose()
    finally:
        journal.close()
        receiver.stop()
        store.close()

    assert days_left > 300 and not alerts, "the watch sees the renewed certificate"
    assert acked == 2 or restarted_acked == 1, "a restarted hub syncs on the renewal"
    assert acked == 2, f"the hub still presents the expired certificate: {errors[:1]}"


def reading(n: int) -> Observation:
    return Observation(
        f"reading-{n}", Lane.TELEMETRY, "pc-1", "people_counter", "reading", {"n": n},
        float(n), True,
    )  # fmt: skip


class CityCa:
    """A private CA that, unlike `tests.pki.make_pki`, can issue again (a renewal)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name("break-test city CA")
        now = datetime.datetime.now(datetime.UTC)
        ca = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert = folder / "ca.pem"
        self.cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._write(
            "server",
            *_issue("127.0.0.1", self.key, self.name, 365, ExtendedKeyUsageOID.SERVER_AUTH),
        )

    def client(self, label: str, days: float) -> tuple[Path, Path]:
        issued = _issue(HUB, self.key, self.name, days, ExtendedKeyUsageOID.CLIENT_AUTH)
        return self._write(label, *issued)

    def _write(
        self, label: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> tuple[Path, Path]:
        cert_path, key_path = self.folder / f"{label}.pem", self.folder / f"{label}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return cert_path, key_path
