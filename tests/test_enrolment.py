"""`hallhub enroll` writes the hub's city settings and key with mode 0600, and a hub
enrolled that way syncs over mutual TLS to a real receiver."""

from __future__ import annotations

import re
import socket
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml

from hub.broker import ManagedBroker
from hub.cli import main
from hub.clock import SystemClock
from hub.config import load_config
from hub.events import Lane, Observation
from hub.journal import Journal
from hub.service import HubService
from sync.city_store import SQLiteBatchStore
from sync.enrolment import ENROLMENT_FILE, KEYS_FILE, enroll, load_enrolment, open_uplink
from sync.keys import HubKey, load_keys
from sync.receiver import BackgroundReceiver, create_app
from sync.tls import ServerTls
from tests.hubkit import eventually, hub_config
from tests.pki import make_pki

HUB = "hall-7"


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hall.yaml"
    path.write_text(f"hub:\n  id: {HUB}\n  state_dir: state\n", encoding="utf-8")
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_enrolled_hub_syncs_over_mutual_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `hallhub enroll` with a CA, a key and a client certificate, the enrolment
    and keys files are 0600 and hold what was given, the enrolment is checked on the
    city, and an uplink opened from them delivers events to a receiver that requires
    the client certificate."""
    pki = make_pki(tmp_path / "pki", common_name=HUB)
    config_path = write_config(tmp_path / "hall")
    secret = bytes.fromhex("5a" * 32)
    secret_file = tmp_path / "secret.hex"
    secret_file.write_text(secret.hex(), encoding="ascii")
    store = SQLiteBatchStore(tmp_path / "city.db")
    key = HubKey(f"{HUB}.k1", HUB, secret)
    app = create_app(store, {key.key_id: key})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = BackgroundReceiver(
        app, sock, ServerTls(pki.server_cert, pki.server_key, pki.ca_cert)
    )
    receiver.start()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"

    code = main(
        ["enroll", "--config", str(config_path), "--city-url", url, "--ca", str(pki.ca_cert),
         "--key-id", key.key_id, "--secret-file", str(secret_file),
         "--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
    )  # fmt: skip
    state_dir = load_config(config_path).hub.state_dir
    document = yaml.safe_load((state_dir / ENROLMENT_FILE).read_text(encoding="utf-8"))
    keys = load_keys(state_dir / KEYS_FILE)

    journal = Journal(state_dir / "journal.sqlite3", HUB)
    journal.open()
    try:
        enrolment = load_enrolment(state_dir, HUB)
        assert enrolment is not None
        for n in range(1, 4):
            await journal.append(
                Observation(f"r-{n}", Lane.RATING, "pad-1", "rating_pad", "rating", {}, 1.0, True)
            )
        async with open_uplink(journal, enrolment, SystemClock()) as uplink:
            sent = await uplink.drain_once()
    finally:
        journal.close()
        receiver.stop()
        store.close()

    assert code == 0
    assert "checked: the city accepts this hub's signed requests" in capsys.readouterr().out
    assert mode(state_dir / ENROLMENT_FILE) == 0o600 and mode(state_dir / KEYS_FILE) == 0o600
    assert document["hub_id"] == HUB and document["url"] == url
    assert document["client_cert"] == str(pki.client_cert.resolve())
    assert keys[key.key_id].secret == secret
    assert secret.hex() not in (state_dir / ENROLMENT_FILE).read_text(encoding="utf-8")
    assert sent == 3
    with sqlite3.connect(tmp_path / "city.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
    conn.close()


def test_enroll_says_when_the_city_refuses_the_key_or_cannot_be_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key the city does not know fails enrolment's check (exit 1, the city's reason
    named) while the files stay written; a city out of reach is only a warning, since
    a hall may be enrolled before its link is up."""
    pki = make_pki(tmp_path / "pki", common_name=HUB)
    config_path = write_config(tmp_path / "hall")
    secret_file = tmp_path / "secret.hex"
    secret_file.write_text("5c" * 32, encoding="ascii")
    known = HubKey(f"{HUB}.k1", HUB, bytes.fromhex("5d" * 32))
    store = SQLiteBatchStore(tmp_path / "city.db")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tls = ServerTls(pki.server_cert, pki.server_key, None)
    receiver = BackgroundReceiver(create_app(store, {known.key_id: known}), sock, tls)
    receiver.start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused

    def enroll_with(url: str) -> int:
        return main(
            ["enroll", "--config", str(config_path), "--city-url", url, "--ca", str(pki.ca_cert),
             "--key-id", f"{HUB}.k9", "--secret-file", str(secret_file)]
        )  # fmt: skip

    try:
        refused = enroll_with(f"https://127.0.0.1:{sock.getsockname()[1]}")
        refused_err = capsys.readouterr().err
        unreachable = enroll_with(f"https://127.0.0.1:{closed.getsockname()[1]}")
        unreachable_err = capsys.readouterr().err
    finally:
        receiver.stop()
        store.close()
        closed.close()

    assert refused == 1 and "refused this hub's signed request" in refused_err
    assert "unknown_key" in refused_err
    assert unreachable == 0 and "could not reach the city" in unreachable_err
    assert (tmp_path / "hall" / "state" / ENROLMENT_FILE).exists()


def test_enroll_refuses_plain_http_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An http:// city URL is refused with a clear message and no file is written."""
    pki = make_pki(tmp_path / "pki")
    config_path = write_config(tmp_path / "hall")
    secret_file = tmp_path / "secret.hex"
    secret_file.write_text("ab" * 32, encoding="ascii")

    code = main(
        ["enroll", "--config", str(config_path), "--city-url", "http://127.0.0.1:1",
         "--ca", str(pki.ca_cert), "--key-id", "k1", "--secret-file", str(secret_file)]
    )  # fmt: skip

    assert code == 2
    assert "https://" in capsys.readouterr().err
    assert not (tmp_path / "hall" / "state" / ENROLMENT_FILE).exists()


async def test_hub_started_from_its_enrolment_syncs_and_warns_of_certificate_expiry(
    tmp_path: Path, broker: ManagedBroker, unique_topic_root: str
) -> None:
    """A hub whose configuration has no city section starts from its enrolment: it
    reaches the mutual-TLS receiver (its health events arrive), and because its
    client certificate expires in 10 days a warning alert for hall IT is open."""
    pki = make_pki(tmp_path / "pki", client_days=10, common_name=HUB)
    key = HubKey(f"{HUB}.k1", HUB, bytes.fromhex("5b" * 32))
    store = SQLiteBatchStore(tmp_path / "city.db")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tls = ServerTls(pki.server_cert, pki.server_key, pki.ca_cert)
    receiver = BackgroundReceiver(create_app(store, {key.key_id: key}), sock, tls)
    receiver.start()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    config = hub_config(tmp_path / "hub", broker.port, unique_topic_root.replace("/", "-"), [])
    config.hub.id = HUB
    enroll(config.hub.state_dir, HUB, url, pki.ca_cert, key=key,
           client_cert=pki.client_cert, client_key=pki.client_key)  # fmt: skip
    service = HubService(config)
    await service.start()
    try:
        await service.journal.append(
            Observation("h-1", Lane.HEALTH, "hub", "hub", "online", {}, 1.0, True)
        )
        await eventually(lambda: store.hub_status(HUB)["events_stored"].get("health"))
        alerts = await eventually(lambda: _alerts(service, "client_certificate_expiring"))
    finally:
        await service.stop()
        receiver.stop()
        store.close()

    assert alerts[0]["team"] == "hall_it" and alerts[0]["severity"] == "high"
    assert re.search(r"expires in (9|10) days", str(alerts[0]["message"]))


def _alerts(service: HubService, condition: str) -> list[dict[str, object]]:
    with service.journal.reading() as conn:
        rows = conn.execute("SELECT * FROM alerts WHERE condition = ?", (condition,)).fetchall()
    return [dict(row) for row in rows]
