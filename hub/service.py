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
import socket
import sqlite3
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from devices.commands import DeviceCommands
from devices.commissioning import Commissioning
from devices.modbus_commands import CommandRouter
from devices.modbus_line import ModbusLines
from devices.modbus_poller import ModbusPoller, Reading
from devices.modbus_units import modbus_pollers
from devices.mqtt_ingest import BrokerSettings, MqttIngest
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.registry import HUB_SOURCE, HealthChange, Registry
from hub.alerts import DevicePlace, list_alerts
from hub.alerts.crews import CrewAlerts
from hub.alerts.hours import FixedHours
from hub.alerts.settings import ClosedHours
from hub.alerts.store import active_alert
from hub.audit import AuditTrail
from hub.broker import Broker, start_broker
from hub.calendar import (
    CalendarSettings,
    HallCalendar,
    layered_settings,
    load_calendar_settings,
)
from hub.clock import Clock, SystemClock
from hub.committed import CommittedBacklog
from hub.config import CitySection, HubConfig
from hub.console_access import ConsoleAccounts
from hub.errors import ConfigError, HallhubError, JournalError
from hub.events import LANE_ORDER, Event, Lane, Observation, hub_event_id
from hub.gauges import WalMeter
from hub.gauges import sample as sample_gauges
from hub.journal import Journal, read_lane
from hub.live import LiveFeed
from hub.mqtt_auth import HALL_IT_TEAM
from hub.ops.lifecycle import operation_tasks
from hub.ops.migrations import migrate_existing, stamp_new
from hub.ops.retention import Retention
from hub.ratings import RatingDesk
from hub.statelock import StateLock
from hub.tickets import TicketDesk, TicketService, desk_connection
from hub.tickets.settings import TicketsSection, layered_tickets
from hub.tokens import load_or_create_token
from rules.layers import CITY_RULES_DIR, hall_layers, load_layers
from rules.runner import RuleRunner
from sync.backlog import BacklogGuard, BacklogPolicy
from sync.city_config import ApplyResult, CityConfigStore, city_calendar, city_windows
from sync.commands import CommandChannel, Handler, events_after
from sync.enrolment import load_enrolment, open_uplink
from sync.poison import Disposition, SetAside, open_quarantine, set_aside_summary
from sync.tls import CertificateWatch
from sync.uplink import Uplink

logger = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL = 1.0
SYNC_ALERT_TEAM = "hall_it"
SYNC_ALERT_SEVERITY = "high"
MIB = 1024 * 1024
RULES_RETRY_FIRST = 0.5
RULES_RETRY_CAP = 30.0
# Who hears that this hub lost its MQTT session to another hub with the same id.
HUB_IT_TEAM = HALL_IT_TEAM


@dataclass
class _Tasks:
    """The service's named background tasks."""

    running: list[asyncio.Task[Any]] = field(default_factory=list)
    closing: bool = False

    def start(self, name: str, work: Awaitable[Any], *, once: bool = False) -> None:
        """Run `work` as a named task; `once` marks work that is meant to finish."""
        task: asyncio.Task[Any] = asyncio.create_task(work, name=name)  # type: ignore[arg-type]
        task.add_done_callback(self._report_end_of_once if once else self._report_end)
        self.running.append(task)

    def _report_end_of_once(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed: %r", task.get_name(), task.exception())

    def _report_end(self, task: asyncio.Task[Any]) -> None:
        """A background task may only end when the hub stops it; anything else is a fault."""
        if task.cancelled() or self.closing:
            return
        failure = task.exception()
        if failure is not None:
            logger.error("task %s died: %r", task.get_name(), failure, exc_info=failure)
        else:
            logger.error("task %s ended by itself", task.get_name())

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
        self.city_config = CityConfigStore(state_dir)
        self.registry = self._load_registry()
        self.journal = Journal(state_dir / "journal.sqlite3", config.hub.id)
        self.token = ""
        self.ingest = MqttIngest(self._broker_settings(), self.registry, self.journal, self.clock)
        self.modbus_lines = ModbusLines()
        self.modbus_pollers: dict[str, ModbusPoller] = {}
        self.calendar = HallCalendar(self._calendar_settings(self.city_config.active_dir()))
        self.crews = CrewAlerts(
            config.alerts,
            self.journal,
            self.clock,
            self._place_of,
            f"{config.mqtt.crew_topic_root}/{config.hub.id}/crews",
            (config.mqtt.host, config.mqtt.port, config.client_id),
            # Once the hall or the city gives a calendar, its hours decide what pages at night.
            hours=(
                CalendarHours(self.calendar, config.alerts.closed_hours)
                if config.alerts.closed_hours is not None
                else None
            ),
            credentials=(
                (config.mqtt.username, _read_secret(config.mqtt.password_file))
                if config.mqtt.username is not None
                else None
            ),
        )
        self.alerts = self.crews.alerts
        self.audit = AuditTrail(self.journal, self.clock)
        root = config.mqtt.topic_root
        self.commissioning = Commissioning(
            self.registry, self.journal, self.audit, self.clock, root
        )
        self.device_commands = DeviceCommands(
            self.registry, self.journal, self.clock, self.ingest.publish, root
        )
        # Modbus units get a verified register write; every other device a tracked MQTT
        # command with a request id. Rules and the console both send through it.
        self.device_router = CommandRouter(self.device_commands, lambda: self.modbus_pollers)
        self.ratings = RatingDesk(
            self.journal,
            self.clock,
            self.calendar,
            self.alerts,
            self.audit,
            config.ratings,
            state_dir,
        )
        self.live = LiveFeed()  # the console's live updates
        self.accounts = ConsoleAccounts(state_dir, self.clock)
        self.tickets = TicketService(
            self._ticket_settings(self.city_config.active_dir()),
            self.journal,
            self.clock,
            self.calendar,
            self.audit,
            announce_root=f"{config.mqtt.topic_root}/_hub/queue",
        )
        self.ticket_desk = TicketDesk(
            desk_connection(self.ingest.settings),
            self.registry,
            self.tickets,
            self.journal,
            self.clock,
        )
        self.rules = RuleRunner(
            journal=self.journal,
            clock=self.clock,
            calendar=self.calendar,
            layers=hall_layers(state_dir, config.rule_files),
            alerts=self.alerts,
            commands=self.device_router,
            publish=self.ingest.publish,
        )
        self.uplink: Uplink | None = None
        self.commands: CommandChannel | None = None
        self.console_port: int | None = None
        self._committed: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._tasks = _Tasks()
        self._stopping = asyncio.Event()
        self._console: uvicorn.Server | None = None
        self._console_socket: socket.socket | None = None
        self._state_lock = StateLock(state_dir)
        self.broker: Broker | None = None
        self.retention = Retention(self.journal, config.operations.retention, self.clock)

    @property
    def console_url(self) -> str:
        return f"http://{self.config.console.host}:{self.console_port}/"

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal and start every part; returns once the console listens.

        If any part fails to start, the parts already running are stopped again, so
        a failed start leaves no broker or task behind.
        """
        try:
            self._prepare_state_dir()
        except (OSError, sqlite3.Error) as exc:
            raise HallhubError(
                f"cannot use state folder {self.config.hub.state_dir}: {exc}"
            ) from exc
        try:
            self._console_socket = bind_console(self.config.console.host, self.config.console.port)
            if self.config.mqtt.managed:
                self.broker = await asyncio.to_thread(self._start_managed_broker)
            await self._start_parts()
        except (OSError, sqlite3.Error) as exc:
            await self.stop()
            raise HallhubError(f"hub failed to start: {exc}") from exc
        except BaseException:
            await self.stop()
            raise

    def _prepare_state_dir(self) -> None:
        state_dir = self.config.hub.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._state_lock.acquire()
        self.token = load_or_create_token(self.config.console.token_file or state_dir / "api-token")
        self.accounts.create_first_admin()

    def _start_managed_broker(self) -> Broker:
        mqtt = self.config.mqtt
        return start_broker(self.config.hub.state_dir / "broker", mqtt.host, mqtt.port)

    async def _start_parts(self) -> None:
        loop = asyncio.get_running_loop()
        await self._open_journal()
        with self.journal.reading() as conn:
            self.registry.restore(conn)
        await self.audit.open()
        await self.commissioning.open()
        await self.device_commands.open()
        await self.tickets.open(self.ticket_desk.publish)
        await self.crews.start()
        await self.ratings.start()

        def hand_over(events: list[Event]) -> None:
            loop.call_soon_threadsafe(self._committed.put_nowait, events)

        self.journal.add_commit_listener(hand_over)
        self.live.follow(self.journal, loop)
        await self.rules.start()

        def taken_over() -> None:
            loop.call_soon_threadsafe(self._alert_taken_over)

        self.ingest.on_taken_over = taken_over
        self._start_uplink()
        self.ingest.start()
        self.ticket_desk.start()
        self._start_pollers()
        self._tasks.start("hub-committed-events", self._follow_committed())
        self._tasks.start("hub-health-watch", self._watch_health())
        self._tasks.start("device-commands", self.device_commands.run())
        self._tasks.start("console-live-alerts", self.live.watch_alerts(self.journal))
        self._tasks.start("rules-timers", self.rules.run())
        for name, work in operation_tasks(self):
            self._tasks.start(name, work)
        self._tasks.start("ratings-pads", self.ratings.follow_pads())
        self._tasks.start("ratings-sweeps", self.ratings.run_sweeps())
        await self._start_console()
        logger.info("hub %s running; console at %s", self.config.hub.id, self.console_url)

    async def _open_journal(self) -> None:
        """Migrate an existing journal (backup first), or stamp a new one as current."""
        path = self.journal.path
        fresh = not path.exists()
        if not fresh:
            await asyncio.to_thread(migrate_existing, path, self.config.hub.state_dir / "backups")
        self.journal.open()
        if fresh:
            await self.journal.write(stamp_new)

    async def stop(self) -> None:
        """Stop taking messages, finish what is queued, close the journal."""
        logger.info("hub %s stopping", self.config.hub.id)
        self._tasks.closing = True
        self.ingest.stop()
        self.ticket_desk.stop()
        await self._stop_console()
        await self._tasks.cancel_all()
        self.modbus_lines.close()
        await self.crews.stop()
        self.journal.close()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
            self.broker = None
        if self._console_socket is not None:
            self._console_socket.close()
            self._console_socket = None
        self._state_lock.release()

    async def _stop_console(self) -> None:
        console, self._console = self._console, None
        if console is None:
            return
        self.live.close_all(accept_new=False)  # open streams would hold the server up
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
        city = self.config.city or load_enrolment(self.config.hub.state_dir, self.config.hub.id)
        if city is None:
            logger.warning("no city platform configured; events stay in the journal")
            return
        self.uplink = open_uplink(self.journal, city, self.clock, self._alert_set_aside)
        uplink = self.uplink
        self.journal.add_commit_listener(lambda _events: uplink.notify())
        self._tasks.start("sync-uplink", uplink.run())
        self._tasks.start(
            "sync-quarantine-alerts", self._alert_quarantine_left_unalerted(), once=True
        )
        self._start_command_channel(city)
        policy = BacklogPolicy(
            {lane: mib * MIB for lane, mib in city.backlog_cap_mib.items()},
            city.alert_free_mib * MIB,
        )
        guard = BacklogGuard(self.journal, policy, self.clock, self._alert_backlog)
        self._tasks.start("sync-backlog-guard", guard.run())
        if city.client_cert is not None:
            watch = CertificateWatch(city.client_cert, self.clock, self._alert_certificate)
            self._tasks.start("sync-certificate-watch", watch.run())

    def _start_command_channel(self, city: CitySection) -> None:
        assert self.uplink is not None
        handlers: dict[str, Handler] = {
            "configure": self._apply_city_config,
            "query_state": self._answer_state_query,
            "query_events": lambda payload: events_after(self.journal, payload),
        }
        self.commands = CommandChannel(
            self.uplink,
            city.url,
            self.config.hub.id,
            handlers,
            self.clock,
            active_config=self.city_config.active_version,
        )
        self._tasks.start("sync-commands", self.commands.run())

    # -- the city's configuration layer ------------------------------------------

    def _load_registry(self) -> Registry:
        """Devices on the city's active device models, rolled back if the hub cannot."""
        while True:
            city_layer = self.city_config.active_dir()
            try:
                self._check_city_layer(city_layer)
                if city_layer is not None:
                    self._link_city_rules()
                return self._build_registry(city_layer)
            except ConfigError:
                if city_layer is None:
                    raise
                logger.exception("hub cannot start on city configuration %s", city_layer.name)
                self.city_config.roll_back()

    def _build_registry(self, city_layer: Path | None) -> Registry:
        # The city's models are the baseline; the hall's own models_dir comes after.
        model_dirs = [shipped_models_dir()]
        if city_layer is not None:
            model_dirs.append(city_layer / "devices")
        model_dirs += filter(None, [self.config.models_dir])
        models = load_models(*model_dirs)
        _check_models_exist(self.config, models)
        return Registry(self.config.devices, models)

    def _check_city_layer(self, city_layer: Path | None) -> None:
        """Raise ConfigError if the hall's own files would not load on this city layer."""
        layers = hall_layers(self.config.hub.state_dir, self.config.rule_files)
        rules_dir = city_layer / "rules" if city_layer is not None else None
        layers = [
            (name, rules_dir if name == "city" and rules_dir else path) for name, path in layers
        ]
        load_layers(layers)
        self._build_registry(city_layer)
        self._calendar_settings(city_layer)
        self._ticket_settings(city_layer)

    def _start_on_city_config(self, city_layer: Path) -> None:
        """Switch the calendar and the rules' city layer to a version already checked.

        The rules reload and the queue's windows follow in `_apply_city_config` (off
        the event loop, and a journal write); new device models apply at the next start.
        """
        self._link_city_rules()
        self.calendar.replace_settings(self._calendar_settings(city_layer))

    def _calendar_settings(self, city_layer: Path | None) -> CalendarSettings | None:
        """The city's calendar and opening hours, if its version has them, under the hall's."""
        city = city_calendar(city_layer) if city_layer is not None else None
        hall_file = self.config.calendar_file
        hall = load_calendar_settings(hall_file) if hall_file else None
        return layered_settings(city, hall)

    def _ticket_settings(self, city_layer: Path | None) -> TicketsSection:
        """The hall's ``tickets:`` section on the city's window assignments, if any."""
        city = city_windows(city_layer) if city_layer is not None else None
        return layered_tickets(city, self.config.tickets, "the city's windows.yaml")

    def _link_city_rules(self) -> None:
        """Make the rules' city layer follow the active city configuration."""
        link = self.config.hub.state_dir / CITY_RULES_DIR
        if link.is_symlink():
            return
        if link.exists():
            raise ConfigError(str(link), ["a folder of the hall's own; the city cannot manage it"])
        temporary = link.with_name(f".{link.name}.new")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(Path("city-config") / "current" / "rules")
        temporary.replace(link)

    async def _apply_city_config(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Check a bundle off the event loop, then switch to it; answer the city."""
        assert self.uplink is not None
        keys = {key.key_id: key for key in self.uplink.signing_keys()}
        prepared = await asyncio.to_thread(
            self.city_config.prepare, bundle, keys, self._check_city_layer
        )
        if isinstance(prepared, ApplyResult):
            return prepared.to_json()

        result = self.city_config.switch(prepared, self._start_on_city_config)
        await self.rules.reload_changed()  # parsed in a thread: a large rule file takes seconds
        windows = self._ticket_settings(self.city_config.active_dir())
        await self.tickets.replace_settings(windows, actor="city")
        await self.rules.check_calendar()  # a year table that came with it clears at once
        return result.to_json()

    async def _answer_state_query(self, _payload: dict[str, Any]) -> dict[str, Any]:
        with self.journal.reading() as conn:
            open_alerts = list_alerts(conn, active_only=True)
            set_aside = set_aside_summary(conn)
        return {
            "status": "ok",
            "hub_id": self.config.hub.id,
            "devices": [device.to_json() for device in self.registry.all()],
            "queue": self.tickets.view(),
            "opening_hours": self.calendar.settings.model_dump(
                mode="json", include={"timezone", "weekday", "saturday"}
            ),
            "open_alerts": open_alerts,
            "sync": self.uplink.status() if self.uplink is not None else {},
            "set_aside": set_aside,
            "city_config": self.city_config.active_version(),
        }

    async def _alert_set_aside(self, record: SetAside) -> None:
        """A quarantined event needs a person; a dead-lettered one is only logged."""
        if record.disposition is not Disposition.QUARANTINED:
            return
        event = record.event
        await self.alerts.raise_condition(
            event.device_id,
            _quarantine_condition({"lane": event.lane.value, "seq": event.seq}),
            SYNC_ALERT_SEVERITY,
            SYNC_ALERT_TEAM,
            f"city refused {event.lane.value} event {event.event_id}; quarantined on the hub",
            event.event_id,
        )

    async def _alert_quarantine_left_unalerted(self) -> None:
        """Alert on open quarantine entries that have no alert (a crash came between
        setting the event aside and raising its alert, or that write failed)."""

        def missing() -> list[dict[str, Any]]:
            with self.journal.reading() as conn:
                return [
                    entry
                    for entry in open_quarantine(conn)
                    if active_alert(conn, f"{entry['device_id']}/{_quarantine_condition(entry)}")
                    is None
                ]

        for entry in await asyncio.to_thread(missing):
            await self.alerts.raise_condition(
                str(entry["device_id"]),
                _quarantine_condition(entry),
                SYNC_ALERT_SEVERITY,
                SYNC_ALERT_TEAM,
                f"city refused {entry['lane']} event {entry['event_id']}; quarantined on the hub",
                str(entry["event_id"]),
            )

    async def _alert_backlog(self, condition: str, message: str) -> None:
        await self.alerts.raise_condition(
            HUB_SOURCE, condition, SYNC_ALERT_SEVERITY, SYNC_ALERT_TEAM, message, None
        )

    async def _alert_certificate(self, path: Path, days: float) -> None:
        await self.alerts.raise_condition(
            HUB_SOURCE,
            "client_certificate_expiring",
            SYNC_ALERT_SEVERITY,
            SYNC_ALERT_TEAM,
            f"client certificate {path.name} for the city expires in {days:.0f} days",
            None,
        )

    def _start_pollers(self) -> None:
        self.modbus_pollers = modbus_pollers(
            self.registry.all(),
            self.modbus_lines,
            self.clock,
            self._on_reading,
            self._on_poll_health,
            is_open=lambda wall: self.calendar.is_open(self.calendar.at_wall(wall)),
        )
        for device_id, poller in self.modbus_pollers.items():
            self._tasks.start(f"modbus-poll-{device_id}", poller.run())

    async def _start_console(self) -> None:
        from hub.console import create_app

        assert self._console_socket is not None, "bind_console() runs first"
        config = uvicorn.Config(
            create_app(self), log_level="warning", lifespan="off", access_log=False
        )
        self._console = uvicorn.Server(config)
        self._tasks.start("console", self._console.serve(sockets=[self._console_socket]))
        while not self._console.started:
            await asyncio.sleep(0.02)
        self.console_port = self._console_socket.getsockname()[1]

    # -- flows -------------------------------------------------------------------

    async def _follow_committed(self) -> None:
        """Feed committed events, in commit order, to the registry and the rules.

        First the rules catch up with events committed before a crash or power cut
        that they never saw (the journal keeps how far they got per lane); then they
        follow live commits, skipping anything the catch-up already covered.
        """
        backlog = CommittedBacklog(await self._catch_up_rules())
        while True:
            backlog.add(await self._committed.get())
            if not backlog:
                continue
            while backlog:
                # Alarms jump the queue (see hub/committed.py); newly committed events
                # are taken in before each one, so a fresh toilet call goes next.
                while not self._committed.empty():
                    backlog.add(self._committed.get_nowait())
                event = backlog.pop()
                await self._observe_health(event)
                await self.device_commands.observe(event)
                if backlog.rules_due(event):
                    await self._apply_rules(event)
                    backlog.mark_handled(event)
            # Saved once per pass (a journal round trip), so saving cannot make the
            # rules fall ever further behind.
            await self._save_rule_progress(backlog.handled)

    async def _observe_health(self, event: Event) -> None:
        change = self.registry.observe(event, self.clock.monotonic())
        if change is None:
            return
        try:
            await self._journal_health(change)
        except JournalError as exc:
            logger.error("could not journal %s going %s: %s", change.device_id, change.online, exc)

    async def _catch_up_rules(self) -> dict[Lane, int]:
        with self.journal.reading() as conn:
            progress = dict(conn.execute("SELECT lane, seq FROM rule_progress").fetchall())
            handled = {lane: int(progress.get(lane.value, 0)) for lane in LANE_ORDER}
            missed = sorted(
                (
                    event
                    for lane in LANE_ORDER
                    for event in read_lane(conn, self.config.hub.id, lane, handled[lane], 100_000)
                ),
                key=lambda event: event.received_at,
            )
        if missed:
            logger.warning(
                "rules catching up with %d events committed before a restart", len(missed)
            )
        for event in missed:
            await self._apply_rules(event)
            handled[event.lane] = max(handled[event.lane], event.seq)
        await self._save_rule_progress(handled)
        return handled

    async def _save_rule_progress(self, handled: dict[Lane, int]) -> None:
        rows = [(lane.value, seq) for lane, seq in handled.items()]

        def save(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO rule_progress (lane, seq) VALUES (?, ?)"
                " ON CONFLICT (lane) DO UPDATE SET seq = excluded.seq",
                rows,
            )

        try:
            await self.journal.write(save)
        except JournalError as exc:
            # Not fatal: the next save covers it, and a restart re-evaluates at most
            # these events (alerts count a repeat rather than opening twice).
            logger.warning("could not record rule progress: %s", exc)

    async def _apply_rules(self, event: Event) -> None:
        """Evaluate `event`; while the journal cannot record the outcome, keep trying.

        Progress only moves past an event once its alerts are on disk, so a full disk
        delays an alert but never drops it. Any other failure is a fault in one rule:
        logged, and the rules go on with the next event.
        """
        delay = RULES_RETRY_FIRST
        while True:
            try:
                await self._evaluate(event)
                return
            except JournalError as exc:
                logger.error("rules wait for the journal on %s: %s", event.event_id, exc)
                await self.clock.sleep(delay)
                delay = min(RULES_RETRY_CAP, delay * 2)
            except Exception:
                logger.exception("rules failed on event %s", event.event_id)
                return

    async def _evaluate(self, event: Event) -> None:
        device = self.registry.get(event.device_id)
        await self.rules.on_event(event, device.spec.zone if device else "")

    async def _watch_health(self) -> None:
        wal = WalMeter(self.journal.path)
        while True:
            await self.clock.sleep(HEALTH_CHECK_INTERVAL)
            for change in self.registry.expire(self.clock.monotonic()):
                await self._journal_health(change)
            sample_gauges(self, wal)

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
        await self.journal.append(
            self._observation(
                reading.device_id, device.kind, reading.lane, reading.message, dict(reading.values)
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

    def _place_of(self, device_id: str) -> DevicePlace:
        device = self.registry.get(device_id)
        if device is None:
            return DevicePlace()
        return DevicePlace(device.kind, device.spec.zone, device.spec.floor)

    def _alert_taken_over(self) -> None:
        self.ticket_desk.stop()  # the other hub numbers the tickets now; never both
        self._tasks.start(
            "hub-alert-taken-over",
            once=True,
            work=self.alerts.raise_condition(
                self.config.hub.id,
                "mqtt_session_taken_over",
                "urgent",
                HUB_IT_TEAM,
                f"another hub connected as {self.config.client_id}; this hub stopped "
                "taking device messages. Stop one of them, then restart this one.",
                None,
            ),
        )


def _quarantine_condition(entry: dict[str, Any]) -> str:
    """The alert condition of a quarantined event (the console's resolve clears it)."""
    return f"sync_quarantine:{entry['lane']}:{entry['seq']}"


def _read_secret(path: Path | None) -> str | None:
    """The first line of a secret file (never logged), or None when not configured."""
    if path is None:
        return None
    return path.read_text(encoding="utf-8").strip()


def _closed(console: uvicorn.Server) -> bool:
    return all(not server.is_serving() for server in console.servers)


class ConsolePortError(HallhubError):
    """The console's address cannot be listened on."""


def bind_console(host: str, port: int) -> socket.socket:
    """Listen on the console's address now, so a port in use fails the start at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise ConsolePortError(
            f"console cannot listen on {host}:{port} ({exc.strerror}); "
            "set console.port to a free port, or 0 to pick one"
        ) from exc
    return listener


def _check_models_exist(config: HubConfig, models: dict[str, DeviceModel]) -> None:
    for index, device in enumerate(config.devices):
        if device.model not in models:
            known = ", ".join(sorted(models))
            raise config.problem(
                ("devices", index, "model"),
                f"device {device.id}: unknown model {device.model!r}; known models: {known}",
            )


class CalendarHours:
    """The hall calendar's opening hours, as the alerts' paging policy asks for them.

    Until a calendar is given (the hall's file or the city's), the fixed times of
    ``closed_hours:`` apply; a calendar the city sends later takes over at once.
    """

    def __init__(self, calendar: HallCalendar, closed_hours: ClosedHours) -> None:
        self._calendar = calendar
        self._fixed = FixedHours(closed_hours)

    def is_open(self, wall: float) -> bool:
        if not self._calendar.settings_given:
            return self._fixed.is_open(wall)
        return self._calendar.is_open(self._calendar.at_wall(wall))
