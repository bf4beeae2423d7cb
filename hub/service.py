"""The hub service: wires devices, journal, rules, alerts, sync and console together.

One asyncio process per hall. The parts never call each other directly: device
drivers hand observations to the journal; the journal reports committed events;
this service feeds those, in commit order, to the registry and the rules, applies the
rules' decisions through the alert service, and wakes the uplink to the city.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from devices.modbus_poller import ModbusPoller, Reading
from devices.mqtt_ingest import BrokerSettings, MqttIngest
from devices.profiles import load_models, shipped_models_dir
from devices.registry import HUB_SOURCE, HealthChange, Registry
from hub import metrics
from hub.alerts import AlertService, encode_notice
from hub.clock import Clock, SystemClock
from hub.config import HubConfig
from hub.events import Event, Lane, Observation, hub_event_id
from hub.journal import Journal
from hub.mqtt_auth import HALL_IT_TEAM
from hub.tokens import load_or_create_token
from rules.engine import ClearCondition, RaiseCondition, RulesEngine, shipped_pack
from sync.uplink import Uplink

logger = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL = 1.0
# Who hears that this hub lost its MQTT session to another hub with the same id.
HUB_IT_TEAM = HALL_IT_TEAM


@dataclass
class _Tasks:
    """The service's named background tasks."""

    running: list[asyncio.Task[Any]] = field(default_factory=list)

    def start(self, name: str, work: Awaitable[Any]) -> None:
        self.running.append(asyncio.create_task(work, name=name))  # type: ignore[arg-type]

    async def cancel_matching(self, prefixes: tuple[str, ...]) -> None:
        chosen = [task for task in self.running if task.get_name().startswith(prefixes)]
        for task in chosen:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self.running.remove(task)

    async def cancel_all(self) -> None:
        for task in self.running:
            task.cancel()
        for task in self.running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.running.clear()


class HubService:
    """One hall's hub."""

    def __init__(self, config: HubConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock(config.hub.clock_sync)
        state_dir = config.hub.state_dir
        models = load_models(shipped_models_dir(), *filter(None, [config.models_dir]))
        self.registry = Registry(config.devices, models)
        self.rules = RulesEngine.from_files([shipped_pack(), *config.rule_files])
        self.journal = Journal(state_dir / "journal.sqlite3", config.hub.id)
        self.token = load_or_create_token(config.console.token_file or state_dir / "api-token")
        self.ingest = MqttIngest(self._broker_settings(), self.registry, self.journal, self.clock)
        self.alerts = AlertService(self.journal, self.clock, self._announce)
        self.uplink: Uplink | None = None
        self.console_port: int | None = None
        self._committed: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._tasks = _Tasks()
        self._stopping = asyncio.Event()
        self._console: uvicorn.Server | None = None

    @property
    def console_url(self) -> str:
        return f"http://{self.config.console.host}:{self.console_port}/"

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal and start every part; returns once the console listens."""
        loop = asyncio.get_running_loop()
        self.journal.open()
        with self.journal.reading() as conn:
            self.registry.restore(conn)

        def hand_over(events: list[Event]) -> None:
            loop.call_soon_threadsafe(self._committed.put_nowait, events)

        self.journal.add_commit_listener(hand_over)

        def taken_over() -> None:
            loop.call_soon_threadsafe(self._alert_taken_over)

        self.ingest.on_taken_over = taken_over
        self._start_uplink()
        self.ingest.start()
        self._start_pollers()
        self._tasks.start("hub-committed-events", self._follow_committed())
        self._tasks.start("hub-health-watch", self._watch_health())
        await self._start_console()
        await self.alerts.refresh_metrics()
        logger.info("hub %s running; console at %s", self.config.hub.id, self.console_url)

    async def stop(self) -> None:
        """Stop taking messages, finish what is queued, close the journal."""
        logger.info("hub %s stopping", self.config.hub.id)
        self.ingest.stop()
        await self._stop_console()
        await self._tasks.cancel_all()
        self.journal.close()

    async def _stop_console(self) -> None:
        console, self._console = self._console, None
        if console is None:
            return
        console.should_exit = True
        for _ in range(200):  # uvicorn checks should_exit every 0.1 s
            if not console.started or console.servers == [] or _closed(console):
                break
            await asyncio.sleep(0.05)
        await self._tasks.cancel_matching(("console",))

    async def quiesce(self) -> None:
        """Stop taking input (MQTT, polls, health verdicts) but keep syncing and serving."""
        self.ingest.stop()
        await self._tasks.cancel_matching(("modbus-poll-", "hub-health-watch"))
        while not self._committed.empty():
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        """Start, run until `request_stop()`, then stop."""
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    # -- parts -------------------------------------------------------------------

    def _broker_settings(self) -> BrokerSettings:
        mqtt = self.config.mqtt
        return BrokerSettings(
            host=mqtt.host,
            port=mqtt.port,
            client_id=self.config.client_id,
            topic_root=mqtt.topic_root,
            receive_maximum=mqtt.receive_maximum,
            session_expiry=mqtt.session_expiry,
            keepalive=mqtt.keepalive,
            username=mqtt.username,
            password=_read_secret(mqtt.password_file),
            mqtt5=mqtt.protocol == "5",
        )

    def _start_uplink(self) -> None:
        city = self.config.city
        if city is None:
            logger.warning("no city platform configured; events stay in the journal")
            return
        secret = bytes.fromhex(city.secret_file.read_text(encoding="ascii").strip())
        self.uplink = Uplink(
            self.journal, city.url, city.key_id, secret, self.clock, batch_size=city.batch_size
        )
        uplink = self.uplink
        self.journal.add_commit_listener(lambda _events: uplink.notify())
        self._tasks.start("sync-uplink", uplink.run())

    def _start_pollers(self) -> None:
        for device in self.registry.all():
            address = device.spec.modbus
            if device.model.protocol != "modbus" or address is None:
                continue
            poller = ModbusPoller(
                device.device_id,
                address.host,
                address.port,
                address.unit_id,
                device.model,
                self.clock,
                self._on_reading,
                self._on_poll_health,
            )
            self._tasks.start(f"modbus-poll-{device.device_id}", poller.run())

    async def _start_console(self) -> None:
        from hub.console import create_app

        settings = self.config.console
        config = uvicorn.Config(
            create_app(self),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._console = uvicorn.Server(config)
        self._tasks.start("console", self._console.serve())
        while not self._console.started:
            await asyncio.sleep(0.02)
        sockets = self._console.servers[0].sockets
        self.console_port = sockets[0].getsockname()[1]

    # -- flows -------------------------------------------------------------------

    async def _follow_committed(self) -> None:
        """Feed committed events, in commit order, to the registry and the rules."""
        while True:
            events = await self._committed.get()
            for event in events:
                try:
                    await self._handle_committed(event)
                except Exception:
                    # One failing rule or handler must not end the feed for all events
                    # after it; the event itself is already safe in the journal.
                    logger.exception("handling committed event %s failed", event.event_id)

    async def _handle_committed(self, event: Event) -> None:
        change = self.registry.observe(event, self.clock.monotonic())
        if change is not None:
            await self._journal_health(change)
        device = self.registry.get(event.device_id)
        zone = device.spec.zone if device else ""
        for action in self.rules.evaluate(event, zone):
            metrics.RULE_FIRINGS.labels(action.rule_id).inc()
            if isinstance(action, RaiseCondition):
                await self.alerts.raise_condition(
                    action.device_id,
                    action.condition,
                    action.severity,
                    action.team,
                    action.message,
                    action.event_id,
                )
            elif isinstance(action, ClearCondition):
                await self.alerts.clear_condition(action.device_id, action.condition)

    async def _watch_health(self) -> None:
        while True:
            await self.clock.sleep(HEALTH_CHECK_INTERVAL)
            for change in self.registry.expire(self.clock.monotonic()):
                await self._journal_health(change)
            metrics.DEVICES_ONLINE.set(self.registry.online_count())
            if self.uplink is not None:
                for lane, row in self.uplink.status().items():
                    metrics.SYNC_BACKLOG.labels(lane).set(row["backlog"])

    async def _journal_health(self, change: HealthChange) -> None:
        device = self.registry.get(change.device_id)
        kind = device.kind if device else "unknown"
        await self.journal.append(
            self._observation(
                change.device_id,
                kind,
                Lane.HEALTH,
                "online" if change.online else "offline",
                {"source": HUB_SOURCE, "reason": change.reason},
            )
        )

    async def _on_reading(self, reading: Reading) -> None:
        device = self.registry.get(reading.device_id)
        if device is None or device.model.modbus is None:
            return
        spec = device.model.modbus
        await self.journal.append(
            self._observation(
                reading.device_id, device.kind, spec.lane, reading.message, dict(reading.values)
            )
        )

    async def _on_poll_health(self, device_id: str, online: bool, reason: str) -> None:
        change = self.registry.set_health(device_id, online, reason)
        if change is not None:
            await self._journal_health(change)

    def _observation(
        self, device_id: str, kind: str, lane: Lane, type_: str, data: dict[str, Any]
    ) -> Observation:
        return Observation(
            event_id=hub_event_id(),
            lane=lane,
            device_id=device_id,
            kind=kind,
            type=type_,
            data=data,
            received_at=self.clock.wall(),
            clock_synchronised=self.clock.is_synchronised(),
        )

    def _alert_taken_over(self) -> None:
        self._tasks.start(
            "hub-alert-taken-over",
            self.alerts.raise_condition(
                self.config.hub.id,
                "mqtt_session_taken_over",
                "urgent",
                HUB_IT_TEAM,
                f"another hub connected as {self.config.client_id}; this hub stopped "
                "taking device messages. Stop one of them, then restart this one.",
                None,
            ),
        )

    def _announce(self, team: str, notice: dict[str, Any]) -> None:
        root = self.config.mqtt.crew_topic_root
        topic = f"{root}/{self.config.hub.id}/crews/{team}/alerts"
        self.ingest.publish(topic, encode_notice(notice))


def _read_secret(path: Path | None) -> str | None:
    """The first line of a secret file (never logged), or None when not configured."""
    if path is None:
        return None
    return path.read_text(encoding="utf-8").strip()


def _closed(console: uvicorn.Server) -> bool:
    return all(not server.is_serving() for server in console.servers)
