"""The managed broker: Mosquitto as the hub's child, its queue and its failures."""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import hub.broker
from hub.broker import InProcessBroker, ManagedBroker, start_broker
from hub.errors import BrokerError

LOOPBACK = "127.0.0.1"
WAIT = 10.0
# Mosquitto's default per-client queue; the managed broker must go past it.
MOSQUITTO_DEFAULT_QUEUE = 1000


class ProbeClient:
    """A device or hub stand-in, driven step by step from a test.

    Each connect() uses a new paho client with the same client id, as a device
    coming back would (paho 2.2 leaks its wake-up socket pair when one client
    object runs loop_start() a second time).
    """

    def __init__(
        self, port: int, client_id: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5
    ) -> None:
        self.port = port
        self.client_id = client_id
        self.protocol = protocol
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present = False
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._disconnected = threading.Event()
        self._client = self._new_paho_client()

    def _new_paho_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def connect(self, persistent: bool = False) -> None:
        """Connect; a persistent session outlives the connection by five minutes."""
        options: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 300 if persistent else 0
            options = {"clean_start": not persistent, "properties": properties}
        self._connected.clear()
        self._client = self._new_paho_client()
        self._client.connect(LOOPBACK, self.port, **options)
        self._client.loop_start()
        assert self._connected.wait(WAIT), "no CONNACK"

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self._client.subscribe(topic, qos=1)
        assert self._subscribed.wait(WAIT), "no SUBACK"

    def publish(self, topic: str, payloads: Iterable[bytes]) -> None:
        """Publish at QoS 1 and wait for every PUBACK."""
        infos = [self._client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(WAIT)

    def receive(self, count: int) -> list[bytes]:
        """The payloads of the next `count` messages, in arrival order."""
        return [bytes(self.messages.get(timeout=WAIT).payload) for _ in range(count)]

    def disconnect(self) -> None:
        """Send DISCONNECT, wait until the connection is closed, release the sockets."""
        self._disconnected.clear()
        self._client.disconnect()
        assert self._disconnected.wait(WAIT), "connection not closed"
        self._client.loop_stop()
        # paho closes its wake-up socket pair only here or when garbage-collected,
        # and a collected cycle may warn about it (ResourceWarning) first.
        self._client.reinitialise()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.session_present = bool(flags.session_present)
        if not reason.is_failure:
            self._connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        self._disconnected.set()


def away_subscriber(port: int, topic_root: str) -> ProbeClient:
    """A subscriber with a persistent session on `topic_root/#` that has gone away."""
    subscriber = ProbeClient(port, f"{topic_root}-sub")
    subscriber.connect(persistent=True)
    subscriber.subscribe(f"{topic_root}/#")
    subscriber.disconnect()
    return subscriber


def publish_numbered(port: int, topic: str, count: int) -> list[bytes]:
    """Publish `count` numbered QoS 1 messages from a fresh client; return them."""
    payloads = [str(number).encode() for number in range(count)]
    publisher = ProbeClient(port, f"{topic}-pub")
    publisher.connect()
    publisher.publish(topic, payloads)
    publisher.disconnect()
    return payloads


def listening_addresses(port: int) -> set[str]:
    """The local IPv4 and IPv6 addresses with a socket listening on `port`."""
    addresses = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A is TCP_LISTEN
                continue
            raw = bytes.fromhex(address_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addresses.add(socket.inet_ntop(family, words))
    return addresses


def is_running_mosquitto(pid: int) -> bool:
    try:
        return b"mosquitto" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# -- listening -----------------------------------------------------------------------


def test_broker_listens_on_loopback_only(broker: ManagedBroker) -> None:
    """The broker's only listening socket is on 127.0.0.1: not 0.0.0.0, not IPv6."""
    assert listening_addresses(broker.port) == {"127.0.0.1"}
    assert f"listener {broker.port} 127.0.0.1\n" in broker.config_path.read_text()
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"


def test_broker_accepts_mqtt5_client(broker: ManagedBroker, unique_topic_root: str) -> None:
    """A paho-mqtt v5 client connects, subscribes and gets its own QoS 1 message."""
    client = ProbeClient(broker.port, unique_topic_root)
    client.connect()
    client.subscribe(f"{unique_topic_root}/#")

    client.publish(f"{unique_topic_root}/ping", [b"hello"])

    assert client.receive(1) == [b"hello"]
    client.disconnect()


def test_wildcard_address_is_refused(tmp_path: Path) -> None:
    """An anonymous broker is never put on every interface at once."""
    with pytest.raises(BrokerError, match=r"refusing to listen on 0\.0\.0\.0"):
        ManagedBroker(tmp_path, "0.0.0.0")


# -- the queue -------------------------------------------------------------------


def test_queue_past_debian_default_reaches_returning_subscriber(
    broker: ManagedBroker, unique_topic_root: str
) -> None:
    """1,500 QoS 1 messages queued for an away session all arrive, in order, on return.

    Mosquitto's default would keep 1,000 and silently drop the rest.
    """
    count = MOSQUITTO_DEFAULT_QUEUE + 500
    subscriber = away_subscriber(broker.port, unique_topic_root)

    sent = publish_numbered(broker.port, f"{unique_topic_root}/telemetry", count)
    subscriber.connect(persistent=True)

    assert subscriber.session_present
    assert subscriber.receive(count) == sent
    assert subscriber.messages.empty()
    subscriber.disconnect()


def test_queue_survives_graceful_restart(
    fresh_broker: ManagedBroker, unique_topic_root: str
) -> None:
    """After stop() and start() on the same state folder, the away session's queue arrives."""
    subscriber = away_subscriber(fresh_broker.port, unique_topic_root)
    sent = publish_numbered(fresh_broker.port, f"{unique_topic_root}/rating", 50)

    fresh_broker.stop()
    assert not fresh_broker.running
    fresh_broker.start()
    subscriber.connect(persistent=True)

    assert subscriber.session_present
    assert subscriber.receive(len(sent)) == sent
    subscriber.disconnect()


def test_killed_broker_starts_again(fresh_broker: ManagedBroker) -> None:
    """A broker killed abruptly (its pid file left behind) starts again on its state folder."""
    old_pid = fresh_broker.pid
    fresh_broker.kill()
    assert not fresh_broker.running
    assert fresh_broker.pid is None

    fresh_broker.start()

    assert fresh_broker.running
    assert fresh_broker.pid != old_pid


HUB_STAND_IN = """
import signal, sys, time
from pathlib import Path
# Ctrl-C ends it even when started with SIGINT ignored (a background job), as the
# hub's own handler does.
signal.signal(signal.SIGINT, signal.default_int_handler)
from hub.broker import ManagedBroker
broker = ManagedBroker(Path(sys.argv[1]), "127.0.0.1", int(sys.argv[2]))
broker.start()
sys.stdout.write(f"{broker.pid}\\n")
sys.stdout.flush()
time.sleep(60)
"""


def start_hub_stand_in(state_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], int]:
    """A process that starts a managed broker the way the hub does; and its broker's pid."""
    hub_process = subprocess.Popen(
        [sys.executable, "-c", HUB_STAND_IN, str(state_dir), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a job in a terminal
    )
    assert hub_process.stdout is not None
    broker_pid = int(hub_process.stdout.readline())
    hub_process.stdout.close()
    return hub_process, broker_pid


def test_hub_crash_keeps_broker_and_queue(
    tmp_path: Path, loopback_port: int, unique_topic_root: str
) -> None:
    """Ctrl-C to the hub's process group kills the hub but not its broker, which
    keeps queueing; the next hub's start() stops that broker gracefully and takes
    over its queue, so nothing queued before or after the hub died is lost.
    """
    state_dir, port = tmp_path / "broker", loopback_port
    hub_process, orphan_pid = start_hub_stand_in(state_dir, port)
    subscriber = away_subscriber(port, unique_topic_root)
    next_hub_broker = ManagedBroker(state_dir, LOOPBACK, port)
    try:
        os.killpg(hub_process.pid, signal.SIGINT)
        hub_process.wait(WAIT)
        assert is_running_mosquitto(orphan_pid)
        sent = publish_numbered(port, f"{unique_topic_root}/alarm", 20)

        next_hub_broker.start()
        subscriber.connect(persistent=True)

        assert not is_running_mosquitto(orphan_pid)
        assert subscriber.receive(len(sent)) == sent
        subscriber.disconnect()
    finally:
        next_hub_broker.stop()
        hub_process.kill()
        hub_process.wait()


# -- failures ----------------------------------------------------------------------


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """A port someone else listens on fails start() with Mosquitto's own reason."""
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        managed = ManagedBroker(tmp_path, LOOPBACK, squatter.getsockname()[1])

        with pytest.raises(BrokerError, match="exited with code") as raised:
            managed.start()

    assert "Address already in use" in raised.value.log_tail
    assert not managed.running


def test_state_dir_under_a_file_is_a_clear_error(tmp_path: Path, loopback_port: int) -> None:
    """A state folder that cannot be created fails start() naming the folder."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    managed = ManagedBroker(blocker / "broker", LOOPBACK, loopback_port)

    with pytest.raises(BrokerError, match=r"cannot write the broker config in .*not-a-folder"):
        managed.start()


def test_corrupt_queue_file_is_a_clear_error(tmp_path: Path, loopback_port: int) -> None:
    """An unreadable mosquitto.db fails start() with the broker's stderr in the message."""
    (tmp_path / "mosquitto.db").write_bytes(b"\x00not a mosquitto database\xff" * 8)
    managed = ManagedBroker(tmp_path, LOOPBACK, loopback_port)

    with pytest.raises(BrokerError, match="Unable to restore persistent database"):
        managed.start()


# -- the fallback ------------------------------------------------------------------


def test_fallback_without_mosquitto_is_amqtt_with_warning(
    tmp_path: Path,
    loopback_port: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a mosquitto binary, start_broker() runs amqtt in-process and says so."""
    monkeypatch.setattr(hub.broker, "find_mosquitto", lambda: None)

    with caplog.at_level(logging.WARNING, logger="hub.broker"):
        fallback = start_broker(tmp_path, LOOPBACK, loopback_port)
    try:
        assert isinstance(fallback, InProcessBroker)
        assert "crash guarantees do not hold" in caplog.text
        client = ProbeClient(fallback.port, "fallback-check", protocol=mqtt.MQTTv311)
        client.connect()
        client.disconnect()
    finally:
        fallback.stop()
    assert not fallback.running


def test_no_broker_at_all_says_to_install_mosquitto(
    tmp_path: Path, loopback_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With neither mosquitto nor amqtt, start_broker() says what to install."""
    monkeypatch.setattr(hub.broker, "find_mosquitto", lambda: None)
    monkeypatch.setattr(hub.broker, "amqtt_available", lambda: False)

    with pytest.raises(BrokerError, match="install the 'mosquitto' package"):
        start_broker(tmp_path, LOOPBACK, loopback_port)
