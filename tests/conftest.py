"""Fixtures shared by every test: loopback ports, brokers, unique topics, a journal.

Every broker here is a Mosquitto the test suite starts itself on a free loopback
port, never one already running on the machine.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.broker import ManagedBroker
from hub.journal import Journal
from tests.postgres import ManagedPostgres

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def loopback_port() -> int:
    """A free TCP port on 127.0.0.1 for a server the test starts itself."""
    return free_port()


# -- brokers -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedBroker]:
    """One Mosquitto for the whole session; tests keep apart by `unique_topic_root`."""
    managed = ManagedBroker(tmp_path_factory.mktemp("broker"), LOOPBACK, free_port())
    managed.start()
    yield managed
    managed.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[ManagedBroker]:
    """A Mosquitto of this test's own, free to be killed or restarted."""
    managed = ManagedBroker(tmp_path / "broker", LOOPBACK, free_port())
    managed.start()
    yield managed
    managed.stop()


# -- topics ------------------------------------------------------------------------


@pytest.fixture
def unique_topic_root() -> str:
    """A topic prefix no other test uses, so tests sharing a broker stay apart."""
    return f"test/{secrets.token_hex(6)}"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """An open journal of hub ``hall-1`` in the test's folder, closed afterwards."""
    opened = Journal(tmp_path / "hub.db", "hall-1")
    opened.open()
    yield opened
    opened.close()


# -- PostgreSQL --------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[ManagedPostgres]:
    """One PostgreSQL cluster of the test run's own, on a free loopback port."""
    managed = ManagedPostgres(free_port())
    managed.start()
    yield managed
    managed.stop()


@pytest.fixture
def postgres_dsn(postgres: ManagedPostgres) -> str:
    """A fresh database in the test run's PostgreSQL."""
    return postgres.create_database(f"t{secrets.token_hex(6)}")
