"""The rules inside the running hub: feed events, run timers, apply and journal firings.

Every firing is journaled (rule id, triggering event ids, actions) together with the
rule states it changed, in one transaction of the journal writer, before its actions
are applied; it is marked applied afterwards, and a firing found unmarked at start
(the hub stopped in between) is carried out then. One lock keeps events, timers and
reloads from interleaving, so the actions come out in the order the engine decided them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from hub import metrics
from hub.alerts import AlertService
from hub.calendar import HallCalendar
from hub.clock import Clock
from hub.events import EVENT_ID_NAMESPACE, Event, Lane, Observation
from hub.journal import Appended, Journal
from rules import store
from rules.actions import (
    Action,
    ClearCondition,
    CommandDevice,
    EmitEvent,
    PublishMessage,
    RaiseCondition,
    SetZoneState,
)
from rules.engine import DERIVED_KIND, Firing, RulesEngine, RuleTime
from rules.layers import Layer, RuleFilesWatcher, RuleSet, load_layers

logger = logging.getLogger(__name__)

TICK_INTERVAL = 1.0
RELOAD_EVERY_TICKS = 5
CALENDAR_EVERY_TICKS = 60
CALENDAR_DEVICE = "hub"
CALENDAR_CONDITIONS = ("clock_not_synchronised", "next_year_table_missing")
DERIVED_DEVICE = "rules"


class CommandService(Protocol):
    """How rules reach devices. The hub implements it; rules never talk MQTT directly."""

    async def send_command(self, device_id: str, command: str, args: dict[str, Any]) -> None:
        """Ask `device_id` to carry out `command`."""
        ...


Publish = Callable[[str, bytes], None]
AppendObservation = Callable[[Observation], Awaitable[Appended]]


class RuleRunner:
    """Owns the engine in the hub and carries out what it decides."""

    def __init__(
        self,
        *,
        journal: Journal,
        clock: Clock,
        calendar: HallCalendar,
        layers: list[Layer],
        alerts: AlertService,
        commands: CommandService,
        publish: Publish,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._alerts = alerts
        self._commands = commands
        self._publish = publish
        self.calendar = calendar
        self.watcher = RuleFilesWatcher(layers)
        self.rule_set: RuleSet = load_layers(layers)
        self.engine = RulesEngine(self.rule_set.rules, calendar)
        self._boot_id = store.current_boot_id()
        self._lock = asyncio.Lock()
        self._calendar_raised: set[str] = set()
        self._calendar_checked = False

    async def start(self) -> None:
        """Create the rule tables and take back the states saved before a restart."""
        await self._journal.write(store.create_tables)
        with self._journal.reading() as conn:
            saved = store.load_states(conn, self._boot_id, self._clock.monotonic())
        self.engine.restore(saved)
        logger.info("rules: %d loaded, %d states restored", len(self.engine.rules), len(saved))
        await self._finish_interrupted_firings()

    async def _finish_interrupted_firings(self) -> None:
        """Carry out firings journaled before a crash whose actions may not have run.

        Re-applying is safe: alerts are keyed by device and condition, derived events
        by a stable id, zone states are set to a value, and a command or message sent
        twice asks a device for the same thing twice.
        """
        with self._journal.reading() as conn:
            interrupted = store.unapplied_firings(conn)
        if not interrupted:
            return
        logger.warning("rules: carrying out %d firings interrupted by a stop", len(interrupted))
        for unapplied in interrupted:
            for action in unapplied.firing.actions:
                await self._apply(action, unapplied.firing, unapplied.fired_at)
        applied = [unapplied.firing_id for unapplied in interrupted]
        wall = self._clock.wall()
        await self._journal.write(lambda conn: store.mark_applied(conn, applied, wall))

    def now(self) -> RuleTime:
        clock = self._clock
        return RuleTime(clock.monotonic(), clock.wall(), clock.is_synchronised())

    async def on_event(self, event: Event, zone: str) -> None:
        """Evaluate one committed event (called in commit order)."""
        async with self._lock:
            firings = self.engine.evaluate(event, zone, self.now())
            await self._commit(firings)

    async def run(self) -> None:
        """Fire due timers and schedules each second; look for changed rule files."""
        ticks = 0
        await self.check_calendar()
        while True:
            await self._clock.sleep(TICK_INTERVAL)
            ticks += 1
            if ticks % CALENDAR_EVERY_TICKS == 0:
                await self.check_calendar()
            if ticks % RELOAD_EVERY_TICKS == 0:
                await self.reload_changed()
            async with self._lock:
                await self._commit(self.engine.tick(self.now()))

    async def check_calendar(self) -> None:
        """Raise (or clear) hall IT's conditions for the calendar and the clock."""
        found = {warning.code: warning for warning in self.calendar.warnings(self._clock)}
        for condition in CALENDAR_CONDITIONS:
            warning = found.get(condition)
            if warning is None:
                if condition in self._calendar_raised or not self._calendar_checked:
                    await self._alerts.clear_condition(CALENDAR_DEVICE, condition)
                self._calendar_raised.discard(condition)
            elif condition not in self._calendar_raised:
                logger.warning("hall calendar: %s", warning.message)
                await self._alerts.raise_condition(
                    CALENDAR_DEVICE, condition, "high", "hall_it", warning.message, None
                )
                self._calendar_raised.add(condition)
        self._calendar_checked = True

    def describe(self) -> dict[str, Any]:
        """Rules in force, where each setting came from, reload errors, calendar warnings."""
        error = self.watcher.last_error
        return {
            "rules": [
                {
                    "id": rule.id,
                    "enabled": rule.enabled,
                    "description": rule.description,
                    "sources": self.rule_set.sources.get(rule.id, {}),
                }
                for rule in self.rule_set.rules
            ],
            "files": [str(path) for path in self.rule_set.files],
            "reload_error": None if error is None else str(error),
            "calendar_warnings": [w.message for w in self.calendar.warnings(self._clock)],
        }

    def reload_if_changed(self) -> bool:
        """Swap in changed rule files if they are valid; keep the old rules otherwise."""
        return self._adopt(self.watcher.reload_if_changed())

    async def reload_changed(self) -> bool:
        """`reload_if_changed`, with the files parsed off the event loop."""
        loaded = await self.watcher.reload_in_thread()
        async with self._lock:  # not between an event's evaluation and its commit
            return self._adopt(loaded)

    def _adopt(self, loaded: RuleSet | None) -> bool:
        if loaded is None:
            return False
        engine = RulesEngine(loaded.rules, self.calendar)
        engine.adopt(self.engine)
        self.engine, self.rule_set = engine, loaded
        return True

    # -- applying --------------------------------------------------------------------

    async def _commit(self, firings: list[Firing]) -> None:
        states = self.engine.take_dirty()
        if not firings and not states:
            return
        wall, mono, boot = self._clock.wall(), self._clock.monotonic(), self._boot_id
        pending = self._journal.call(
            lambda conn: store.save(conn, firings, states, wall, mono, boot)
        )
        if not firings:
            # State alone (a count, a last value): the writer keeps it in order with
            # everything after it, so events need not wait for each state commit.
            pending.add_done_callback(_log_failed_save)
            return
        firing_ids = await asyncio.wrap_future(pending)  # a firing is on disk before it acts
        for firing in firings:
            metrics.RULE_FIRINGS.labels(firing.rule_id).inc()
            for action in firing.actions:
                await self._apply(action, firing, wall)
        # Not awaited: if the hub stops before this commits, the firings are carried
        # out again at start, which their actions tolerate.
        self._journal.call(
            lambda conn: store.mark_applied(conn, firing_ids, self._clock.wall())
        ).add_done_callback(_log_failed_save)

    async def _apply(self, action: Action, firing: Firing, fired_at: float) -> None:
        if isinstance(action, RaiseCondition):
            await self._alerts.raise_condition(
                action.device_id,
                action.condition,
                action.severity,
                action.team,
                action.message,
                action.event_id,
            )
        elif isinstance(action, ClearCondition):
            await self._alerts.clear_condition(action.device_id, action.condition)
        elif isinstance(action, CommandDevice):
            await self._commands.send_command(action.device_id, action.command, dict(action.args))
        elif isinstance(action, PublishMessage):
            self._publish(action.topic, json.dumps(dict(action.payload)).encode())
        elif isinstance(action, SetZoneState):
            wall = self._clock.wall()
            await self._journal.write(
                lambda conn: store.set_zone_state(
                    conn, action.zone, action.state, action.value, action.rule_id, wall
                )
            )
        else:
            await self._emit(action, firing, fired_at)

    async def _emit(self, action: EmitEvent, firing: Firing, fired_at: float) -> None:
        # A stable id: the same firing emitted twice (restart, retry) is kept once.
        basis = f"derived\n{firing.rule_id}\n{firing.phase}\n" + "\n".join(firing.trigger_ids)
        if not firing.trigger_ids:  # a schedule: each run is its own event
            basis += f"\n{fired_at}"
        event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, basis + f"\n{action.type}"))
        data = {**dict(action.data), "rule_id": action.rule_id, "about": action.about}
        await self._journal.append(
            Observation(
                event_id=event_id,
                lane=Lane(action.lane),
                device_id=DERIVED_DEVICE,
                kind=DERIVED_KIND,
                type=action.type,
                data=data,
                received_at=self._clock.wall(),
                clock_synchronised=self._clock.is_synchronised(),
            )
        )


def _log_failed_save(done: concurrent.futures.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        logger.error("rule states not saved: %s", done.exception())
