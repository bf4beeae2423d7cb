"""MQTT ingest: device messages in, journaled, and only then acknowledged.

The hub subscribes to ``<topic root>/<device id>/<message>`` with QoS 1 and manual
acknowledgement. Each message is checked against its device's model and handed to
the journal; the PUBACK goes out from the journal's commit report. So a message the
broker has seen acknowledged is always on disk, and one that was not is redelivered
after a crash and recognised by its event id.

Every message is acknowledged exactly once, refused ones included (after they are
kept in the dead-letter table), so no in-flight slot leaks and one bad device cannot
stall the rest. The only exception is a journal that cannot commit: then nothing is
acknowledged, and the broker keeps the messages until the disk is back.

paho's network loop runs in its own thread; the callback here only checks the
payload and queues it, so a slow step elsewhere never starves the keepalive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.payloads import RejectedMessage, decode_payload
from devices.registry import DeviceLifecycle, Registry
from devices.session_claim import Claim, SessionClaim
from hub import metrics
from hub.clock import Clock
from hub.errors import JournalError
from hub.events import Observation, device_event_id, fallback_event_id
from hub.journal import Appended, Journal, keep_dead_letter

logger = logging.getLogger(__name__)

# MQTT v5 reason code the broker sends when another client takes over our client id.
SESSION_TAKEN_OVER = 142
# While the journal cannot commit, messages are retried after 0.5 s, 1 s, 2 s … 30 s.
RETRY_FIRST = 0.5
RETRY_CAP = 30.0
# How long a reconnecting hub waits for its session marker before claiming anew.
CLAIM_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """How the hub connects to the hall's broker."""

    host: str
    port: int
    client_id: str
    topic_root: str
    receive_maximum: int = 200
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    mqtt5: bool = True


class MqttIngest:
    """The hub's MQTT client: device messages in, crew notices out."""

    def __init__(
        self, settings: BrokerSettings, registry: Registry, journal: Journal, clock: Clock
    ) -> None:
        self.settings = settings
        self._registry = registry
        self._journal = journal
        self._clock = clock
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._outage_logged = False
        self._journal_outage = False
        self._stopping = False
        self._taken_over = False
        self.connections = 0
        self._claim = SessionClaim(settings.topic_root, settings.client_id)
        self._claim_lock = threading.Lock()
        self._claim_timer: threading.Timer | None = None
        self._held: list[mqtt.MQTTMessage] = []
        self.on_taken_over: Callable[[], None] | None = None
        self._client = self._make_client()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def taken_over(self) -> bool:
        """Whether another client with our id took the session, so ingest stayed off."""
        return self._taken_over

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after a loss."""
        if self.settings.mqtt5:
            connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect_properties.SessionExpiryInterval = self.settings.session_expiry
            connect_properties.ReceiveMaximum = self.settings.receive_maximum
            self._client.connect_async(
                self.settings.host,
                self.settings.port,
                keepalive=self.settings.keepalive,
                clean_start=False,
                properties=connect_properties,
            )
        else:
            self._client.connect_async(
                self.settings.host, self.settings.port, keepalive=self.settings.keepalive
            )
        self._client.loop_start()
        logger.info(
            "MQTT ingest connecting to %s:%d as %s",
            self.settings.host,
            self.settings.port,
            self.settings.client_id,
        )

    def stop(self) -> None:
        """Disconnect cleanly; unacknowledged messages stay with the broker."""
        self._stopping = True
        if self._claim_timer is not None:
            self._claim_timer.cancel()
        self._client.disconnect()
        self._client.loop_stop()
        # paho closes the wake-up socket pair of loop_start() only when the client is
        # garbage collected, which under a cycle can leave both sockets unclosed.
        self._client._reset_sockets(sockpair_only=True)
        self._connected.clear()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the broker has confirmed the device subscription (SUBACK)."""
        return self._subscribed.wait(timeout)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1; paho holds it and sends after a reconnect if needed."""
        self._client.publish(topic, payload, qos=1, retain=retain)

    # -- paho callbacks (network thread) -----------------------------------------

    def _make_client(self) -> mqtt.Client:
        if self.settings.mqtt5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.settings.client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
        else:
            # MQTT 3.1.1 (the in-process fallback broker): a persistent session through
            # clean_session=False; the broker alone decides the in-flight window.
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.settings.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.settings.password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            logger.error("broker refused the hub's connection: %s", reason)
            return
        # Subscribe on every connect: a broker restarted without its saved session
        # has forgotten our subscriptions. Retain-As-Published off means only
        # messages replayed because we subscribed still carry the retain flag.
        device_topics = f"{self.settings.topic_root}/+/+"
        for topic in (device_topics, self._claim.topic):
            if self.settings.mqtt5:
                options = SubscribeOptions(qos=1, retainAsPublished=False)
                client.subscribe(topic, options=options)
            else:
                client.subscribe(topic, qos=1)  # 3.1.1 brokers clear retain on live messages
        self._begin_claim()
        self._connected.set()
        self.connections += 1
        if self._outage_logged:
            logger.info("MQTT connection restored (session present: %s)", flags.session_present)
        self._outage_logged = False

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        refused = [reason for reason in reasons if getattr(reason, "is_failure", False)]
        if refused:
            logger.error("broker refused the device subscription: %s", refused)
            return
        self._subscribed.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connected.clear()
        if self._stopping:
            logger.info("MQTT ingest disconnected")
            return
        if self._taken_over:
            return
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            self._stay_off()
            return
        if not self._outage_logged:
            logger.error("MQTT connection lost: %s; reconnecting", reason)
            self._outage_logged = True

    def _stay_off(self) -> None:
        """Another hub took our session: stop reconnecting instead of kicking it back.

        Two hubs sharing one client id would otherwise take the session from each
        other on every reconnect, each losing its in-flight messages every time.
        The newer one keeps the session; this one stays off until restarted.
        """
        self._taken_over = True
        self._held.clear()  # unacknowledged: the broker gives them to the session's holder
        logger.error(
            "another hub connected with client id %s; this hub stops taking MQTT input "
            "until restarted, as two hubs must not share one id",
            self.settings.client_id,
        )
        self._client.disconnect()  # ends the network thread without reconnecting
        if self.on_taken_over is not None:
            self.on_taken_over()

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        # An exception escaping a paho callback would end the network thread, and
        # with it all ingest; so nothing escapes.
        try:
            if message._topic == self._claim.topic.encode():
                self._client.ack(message.mid, message.qos)
                self._judge_marker(bytes(message.payload))
            elif not self._hold_while_checking(message):
                self._handle(message)
        except Exception:
            logger.exception("failed to handle a message on %s", _topic_text(message))

    # -- session claim (see devices/session_claim.py) ---------------------------

    def _begin_claim(self) -> None:
        with self._claim_lock:
            state = self._claim.on_connect()
        if state is Claim.WRITING:
            self._client.publish(self._claim.topic, self._claim.token, qos=1, retain=True)
        elif state is Claim.CHECKING:
            self._claim_timer = threading.Timer(CLAIM_WAIT, self._claim_unanswered)
            self._claim_timer.daemon = True
            self._claim_timer.start()

    def _hold_while_checking(self, message: mqtt.MQTTMessage) -> bool:
        with self._claim_lock:
            if self._claim.state is Claim.CHECKING:
                self._held.append(message)
                return True
            return self._claim.state is Claim.LOST

    def _judge_marker(self, payload: bytes) -> None:
        with self._claim_lock:
            before = self._claim.state
            after = self._claim.on_marker(payload)
        if after is Claim.LOST and before is not Claim.LOST:
            if self._claim_timer is not None:
                self._claim_timer.cancel()
            self._stay_off()
        elif after is Claim.HELD and before is Claim.CHECKING:
            self._release_held()

    def _claim_unanswered(self) -> None:
        with self._claim_lock:
            state = self._claim.on_no_marker()
        if state is Claim.WRITING:
            self._client.publish(self._claim.topic, self._claim.token, qos=1, retain=True)
            self._release_held()

    def _release_held(self) -> None:
        with self._claim_lock:
            held, self._held = self._held, []
        for message in held:
            self._handle(message)

    def _handle(self, message: mqtt.MQTTMessage) -> None:
        try:
            observation = self._observe(message)
        except RejectedMessage as rejection:
            self._dead_letter(message, rejection)
            return
        except Exception as exc:  # a bug must not stop ingest: keep the message, go on
            logger.exception("unexpected failure checking %s", _topic_text(message))
            self._dead_letter(message, RejectedMessage("internal_error", repr(exc)[:200]))
            return

        self._submit(message, observation, attempt=1)

    def _submit(self, message: mqtt.MQTTMessage, observation: Observation, attempt: int) -> None:
        def committed(outcome: Appended | BaseException) -> None:
            self._after_commit(message, observation, outcome, attempt)

        self._journal.submit(observation, committed)

    # -- steps -------------------------------------------------------------------

    def _observe(self, message: mqtt.MQTTMessage) -> Observation:
        topic = _topic_text(message)
        prefix = self.settings.topic_root + "/"
        levels = topic.removeprefix(prefix).split("/")
        if not topic.startswith(prefix) or len(levels) != 2:
            raise RejectedMessage("bad_topic", f"unexpected topic {topic[:200]!r}")
        device_id, message_name = levels

        device = self._registry.get(device_id)
        if device is None:
            raise RejectedMessage("unknown_device", f"no device {device_id!r} in this hall")
        if device.model.mqtt is None:
            raise RejectedMessage("wrong_protocol", f"{device_id} is not an MQTT device")
        if device.lifecycle is DeviceLifecycle.RETIRED:
            raise RejectedMessage("retired_device", f"{device_id} was retired by hall IT")

        payload = bytes(message.payload)
        decoded = decode_payload(device.model, message_name, payload)
        spec = device.model.mqtt.messages[message_name]
        if decoded.message_id is not None:
            event_id = device_event_id(device_id, decoded.message_id)
        else:
            event_id = fallback_event_id(device_id, topic, payload)
        return Observation(
            event_id=event_id,
            lane=spec.lane,
            device_id=device_id,
            kind=device.kind,
            type=message_name,
            data=decoded.fields,
            received_at=self._clock.wall(),
            clock_synchronised=self._clock.is_synchronised(),
            device_time=decoded.device_time,
            retained=bool(message.retain),
        )

    def _after_commit(
        self,
        message: mqtt.MQTTMessage,
        observation: Observation,
        outcome: Appended | BaseException,
        attempt: int,
    ) -> None:
        kind = observation.kind
        if isinstance(outcome, JournalError):
            # The journal could not commit at all (disk full, I/O error). Not
            # acknowledged: the message is retried here until the journal takes it.
            metrics.EVENTS_INGESTED.labels(kind, "journal_error").inc()
            self._retry_later(attempt, lambda: self._submit(message, observation, attempt + 1))
            return
        if isinstance(outcome, BaseException):
            # This one message could not be stored (the group committed without it).
            self._dead_letter(message, RejectedMessage("journal_refused", repr(outcome)[:300]))
            return
        if outcome.conflict:
            logger.warning(
                "%s reused message id of event %s with other content; kept as dead letter",
                observation.device_id,
                outcome.event.event_id,
            )
            self._dead_letter(message, RejectedMessage("id_collision", outcome.event.event_id))
            return
        metrics.EVENTS_INGESTED.labels(kind, "duplicate" if outcome.duplicate else "accepted").inc()
        self._client.ack(message.mid, message.qos)
        if self._journal_outage:
            self._journal_outage = False
            logger.info("journal commits again; held messages are going in")

    def _retry_later(self, attempt: int, retry: Callable[[], None]) -> None:
        delay = min(RETRY_CAP, RETRY_FIRST * 2 ** (attempt - 1))
        if not self._journal_outage:
            self._journal_outage = True
            logger.error("journal cannot commit; holding messages and retrying")
        timer = threading.Timer(delay, retry)
        timer.daemon = True
        timer.start()

    def _dead_letter(self, message: mqtt.MQTTMessage, rejection: RejectedMessage) -> None:
        topic = _topic_text(message)[:512]
        logger.debug("refused %s: %s", topic, rejection)
        metrics.DEAD_LETTERS.labels(rejection.reason).inc()
        metrics.EVENTS_INGESTED.labels("unknown", "rejected").inc()
        received_at = self._clock.wall()
        raw = bytes(message.payload)

        def keep(conn: Any) -> None:
            keep_dead_letter(
                conn, received_at, f"mqtt:{topic}", rejection.reason, rejection.detail, raw
            )

        self._keep(message, keep, attempt=1)

    def _keep(self, message: mqtt.MQTTMessage, keep: Callable[[Any], None], attempt: int) -> None:
        future = self._journal.call(keep)
        future.add_done_callback(lambda done: self._ack_kept(message, keep, done, attempt))

    def _ack_kept(
        self,
        message: mqtt.MQTTMessage,
        keep: Callable[[Any], None],
        done: Any,
        attempt: int,
    ) -> None:
        failure = done.exception()
        if isinstance(failure, JournalError):
            self._retry_later(attempt, lambda: self._keep(message, keep, attempt + 1))
            return
        if failure is not None:
            logger.error(
                "could not keep refused message from %s: %s", _topic_text(message), failure
            )
        self._client.ack(message.mid, message.qos)


def _topic_text(message: mqtt.MQTTMessage) -> str:
    """The topic as text, even if a misbehaving client sent invalid UTF-8."""
    raw: bytes = message._topic  # paho's own decode raises on invalid UTF-8
    return raw.decode("utf-8", errors="replace")
