"""The alert lifecycle: open, acknowledged, resolved; deduped, held, suppressed.

A condition raised by a rule on a device opens one alert; raising it again while the
alert is still active only counts it, so a repeating device makes one alert, not a
flood. Clearing the condition resolves the alert, unless the condition is flapping
(too many changes in a window): then the alert is ``suppressed``, announced once,
and stays so until the device has been quiet for a window. An alert raised inside a
silence, or outside opening hours at a severity that does not page at night, is
opened but held: crews are paged when the hold lifts, if it is still open.

Every change is written to the journal in one transaction; the pages it causes
(team, notice) are handed to `notify` after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub import metrics
from hub.alerts.errors import AlertLatchedError, AlertNotFoundError
from hub.alerts.escalation import Ladders
from hub.alerts.hours import OpeningHours, PagingPolicy
from hub.alerts.routing import DevicePlace, Router
from hub.alerts.schema import migrate
from hub.alerts.settings import AlertsSection
from hub.alerts.silences import add_silence, covering_silence, end_silence
from hub.alerts.store import STATES, active_alert, alert_by_id
from hub.clock import Clock
from hub.journal import Journal

logger = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]
Locate = Callable[[str], DevicePlace]
Page = tuple[str, dict[str, Any]]


def _nowhere(_device_id: str) -> DevicePlace:
    return DevicePlace()


@dataclass(frozen=True)
class AlertPolicy:
    """The configured decisions the lifecycle follows."""

    router: Router
    ladders: Ladders
    paging: PagingPolicy
    latched: frozenset[str]
    flap_transitions: int
    flap_window: float
    never_suppress: frozenset[str]

    @classmethod
    def from_settings(
        cls, settings: AlertsSection, hours: OpeningHours | None = None
    ) -> AlertPolicy:
        return cls(
            router=Router(settings.routes),
            ladders=Ladders(settings.ladders, settings.team_ladders),
            paging=PagingPolicy.from_settings(settings.closed_hours, hours),
            latched=frozenset(settings.latched_conditions),
            flap_transitions=settings.flapping.transitions,
            flap_window=settings.flapping.window,
            never_suppress=frozenset(settings.flapping.never_suppress),
        )


class AlertService:
    """Opens, counts, acknowledges, escalates, suppresses and resolves alerts."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        announce: Notify,
        settings: AlertsSection | None = None,
        locate: Locate = _nowhere,
        hours: OpeningHours | None = None,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._notify = announce
        self.settings = settings or AlertsSection()
        self.policy = AlertPolicy.from_settings(self.settings, hours)
        self._locate = locate

    async def start(self) -> None:
        """Add the package's tables to the journal; call once after it opened."""
        await self._journal.write(migrate)
        await self.refresh_metrics()

    async def run(self) -> None:
        """Lift holds, end flapping and escalate, every tick, until cancelled."""
        while True:
            await self._clock.sleep(self.settings.tick_interval)
            try:
                # Shielded: cancelled after the commit but before the pages go out,
                # escalations would be recorded yet never sent.
                await asyncio.shield(self.tick())
            except Exception:
                logger.exception("alert tick failed; trying again next tick")

    # -- conditions from rules ----------------------------------------------------

    async def raise_condition(
        self,
        device_id: str,
        condition: str,
        severity: str,
        team: str,
        message: str,
        event_id: str | None,
    ) -> dict[str, Any]:
        """Open an alert for `condition` on `device_id`, or count it again."""
        now = self._clock.wall()
        place = self._locate(device_id)
        routed_team = self.policy.router.team_for(place, severity, team)
        key = f"{device_id}/{condition}"

        def upsert(conn: sqlite3.Connection) -> tuple[dict[str, Any], list[Page]]:
            active = active_alert(conn, key)
            if active is not None:
                return self._count_again(conn, active, now), []
            flapping = self._record_transition(conn, key, now, severity)
            cursor = conn.execute(
                "INSERT INTO alerts (alert_key, device_id, condition, severity, team, state,"
                " message, opened_at, opened_by_event, kind, zone, floor, latched, updated_at)"
                " VALUES (:key, :device_id, :condition, :severity, :team, 'open', :message,"
                " :now, :event_id, :kind, :zone, :floor, :latched, :now)",
                {
                    "key": key,
                    "device_id": device_id,
                    "condition": condition,
                    "severity": severity,
                    "team": routed_team,
                    "message": message,
                    "now": now,
                    "event_id": event_id,
                    "kind": place.kind,
                    "zone": place.zone,
                    "floor": place.floor,
                    "latched": int(condition in self.policy.latched),
                },
            )
            alert_id = int(cursor.lastrowid or 0)
            if flapping:
                return self._suppress(conn, alert_id, now, condition_active=True)
            return self._page_if_due(conn, alert_id, now)

        alert, pages = await self._journal.write(upsert)
        if alert["count"] == 1:
            logger.warning("alert %d opened (%s): %s", alert["alert_id"], alert["state"], message)
        await self._after(pages)
        return alert

    async def clear_condition(
        self, device_id: str, condition: str, by: str = "condition cleared"
    ) -> dict[str, Any] | None:
        """Resolve the active alert for `condition` on `device_id`, if there is one."""
        now = self._clock.wall()
        key = f"{device_id}/{condition}"

        def clear(conn: sqlite3.Connection) -> tuple[dict[str, Any] | None, list[Page]]:
            active = active_alert(conn, key)
            if active is None:
                return None, []
            flapping = self._record_transition(conn, key, now, active["severity"])
            if active["state"] == "suppressed" or flapping:
                return self._suppress(conn, active["alert_id"], now, condition_active=False)
            return self._resolve(conn, active, now, by)

        alert, pages = await self._journal.write(clear)
        if alert is not None and alert["state"] == "resolved":
            logger.info("alert %d resolved: %s", alert["alert_id"], by)
        await self._after(pages)
        return alert

    # -- people acting on alerts --------------------------------------------------

    async def acknowledge(self, alert_id: int, by: str) -> dict[str, Any]:
        """Record that `by` has taken the alert on; escalation stops."""
        now = self._clock.wall()

        def ack(conn: sqlite3.Connection) -> tuple[dict[str, Any], list[Page]]:
            cursor = conn.execute(
                "UPDATE alerts SET state = 'acknowledged', acknowledged_at = ?,"
                " acknowledged_by = ?, escalate_at = NULL, updated_at = ?"
                " WHERE alert_id = ? AND state = 'open'",
                (now, by, now, alert_id),
            )
            if cursor.rowcount == 0:
                raise AlertNotFoundError(f"no open alert {alert_id}")
            alert = _row(conn, alert_id)
            return alert, self._tell_everyone_paged(alert, "acknowledged")

        alert, pages = await self._journal.write(ack)
        logger.info("alert %d acknowledged by %s", alert_id, by)
        await self._after(pages)
        return alert

    async def resolve(self, alert_id: int, by: str) -> dict[str, Any]:
        """Resolve by hand; refused for a latched condition still active at the device."""
        now = self._clock.wall()

        def resolve(conn: sqlite3.Connection) -> tuple[dict[str, Any], list[Page]]:
            alert = alert_by_id(conn, alert_id)
            if alert is None or alert["state"] == "resolved":
                raise AlertNotFoundError(f"no active alert {alert_id}")
            if alert["latched"] and alert["condition_active"]:
                raise AlertLatchedError(alert_id, alert["condition"])
            return self._resolve(conn, alert, now, by)

        alert, pages = await self._journal.write(resolve)
        logger.info("alert %d resolved by hand by %s", alert_id, by)
        await self._after(pages)
        return alert

    async def silence(
        self, scope: str, value: str, duration: float, reason: str, by: str
    ) -> dict[str, Any]:
        """Hold pages for a device, zone or kind for `duration` seconds."""
        now = self._clock.wall()
        silence = await self._journal.write(
            lambda conn: add_silence(conn, scope, value, duration, reason, by, now)
        )
        logger.info("silence %d on %s %s by %s", silence["silence_id"], scope, value, by)
        return silence

    async def end_silence(self, silence_id: int) -> dict[str, Any]:
        """End a silence early; held alerts page at the next tick."""
        now = self._clock.wall()
        return await self._journal.write(lambda conn: end_silence(conn, silence_id, now))

    # -- time ---------------------------------------------------------------------

    async def tick(self) -> None:
        """End quiet flapping, lift expired holds, escalate what is overdue."""
        now = self._clock.wall()

        def work(conn: sqlite3.Connection) -> list[Page]:
            pages = self._end_quiet_flapping(conn, now)
            pages += self._lift_holds(conn, now)
            pages += self._escalate_overdue(conn, now)
            conn.execute(
                "DELETE FROM alert_transitions WHERE at < ?", (now - 2 * self.policy.flap_window,)
            )
            return pages

        pages = await self._journal.write(work)
        await self._after(pages)

    async def refresh_metrics(self) -> None:
        with self._journal.reading() as conn:
            counts = dict(conn.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state"))
        for state in STATES:
            metrics.ALERTS.labels(state).set(counts.get(state, 0))

    # -- steps inside one transaction ---------------------------------------------

    def _count_again(
        self, conn: sqlite3.Connection, active: dict[str, Any], now: float
    ) -> dict[str, Any]:
        if active["state"] == "suppressed" and not active["condition_active"]:
            self._record_transition(conn, active["alert_key"], now, active["severity"])
        conn.execute(
            "UPDATE alerts SET count = count + 1, condition_active = 1, updated_at = ?"
            " WHERE alert_id = ?",
            (now, active["alert_id"]),
        )
        return _row(conn, active["alert_id"])

    def _record_transition(
        self, conn: sqlite3.Connection, key: str, now: float, severity: str
    ) -> bool:
        """Remember one change of the condition; True if it is now flapping."""
        conn.execute("INSERT INTO alert_transitions (alert_key, at) VALUES (?, ?)", (key, now))
        if severity in self.policy.never_suppress:
            return False
        (recent,) = conn.execute(
            "SELECT COUNT(*) FROM alert_transitions WHERE alert_key = ? AND at > ?",
            (key, now - self.policy.flap_window),
        ).fetchone()
        return int(recent) >= self.policy.flap_transitions

    def _suppress(
        self, conn: sqlite3.Connection, alert_id: int, now: float, condition_active: bool
    ) -> tuple[dict[str, Any], list[Page]]:
        before = _row(conn, alert_id)
        conn.execute(
            "UPDATE alerts SET state = 'suppressed', condition_active = ?, escalate_at = NULL,"
            " hold_reason = 'flapping', suppressed_at = COALESCE(suppressed_at, ?),"
            " updated_at = ? WHERE alert_id = ?",
            (int(condition_active), now, now, alert_id),
        )
        alert = _row(conn, alert_id)
        if before["state"] == "suppressed":
            return alert, []
        logger.warning("alert %d suppressed: %s is flapping", alert_id, alert["alert_key"])
        return alert, [(alert["team"], {"event": "suppressed", **alert})]

    def _hold_reason(self, conn: sqlite3.Connection, alert: dict[str, Any], now: float) -> str:
        place = DevicePlace(alert["kind"], alert["zone"], alert["floor"])
        silence_id = covering_silence(conn, alert["device_id"], place, now)
        if silence_id is not None:
            return f"silence {silence_id}"
        if not self.policy.paging.pages_now(alert["severity"], now):
            return "closed hours"
        return ""

    def _page_if_due(
        self, conn: sqlite3.Connection, alert_id: int, now: float
    ) -> tuple[dict[str, Any], list[Page]]:
        alert = _row(conn, alert_id)
        hold = self._hold_reason(conn, alert, now)
        if hold:
            conn.execute("UPDATE alerts SET hold_reason = ? WHERE alert_id = ?", (hold, alert_id))
            return _row(conn, alert_id), []
        deadline = self.policy.ladders.first_deadline(alert["team"], alert["severity"], now)
        conn.execute(
            "UPDATE alerts SET hold_reason = NULL, notified_at = ?, escalation_step = 0,"
            " escalate_at = ? WHERE alert_id = ?",
            (now, deadline, alert_id),
        )
        alert = _row(conn, alert_id)
        return alert, [(alert["team"], {"event": "opened", **alert})]

    def _resolve(
        self, conn: sqlite3.Connection, alert: dict[str, Any], now: float, by: str
    ) -> tuple[dict[str, Any], list[Page]]:
        conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ?,"
            " condition_active = 0, escalate_at = NULL, updated_at = ? WHERE alert_id = ?",
            (now, by, now, alert["alert_id"]),
        )
        resolved = _row(conn, alert["alert_id"])
        if alert["notified_at"] is None and alert["suppressed_at"] is None:
            return resolved, []
        return resolved, self._tell_everyone_paged(resolved, "resolved")

    def _tell_everyone_paged(self, alert: dict[str, Any], event: str) -> list[Page]:
        teams = [alert["team"]]
        for index in range(alert["escalation_step"]):
            step = self.policy.ladders.step(alert["team"], alert["severity"], index)
            if step is not None and step.notify not in teams:
                teams.append(step.notify)
        return [(team, {"event": event, **alert}) for team in teams]

    def _end_quiet_flapping(self, conn: sqlite3.Connection, now: float) -> list[Page]:
        pages: list[Page] = []
        quiet_since = now - self.policy.flap_window
        rows = conn.execute(
            "SELECT a.* FROM alerts a WHERE a.state = 'suppressed' AND NOT EXISTS"
            " (SELECT 1 FROM alert_transitions t WHERE t.alert_key = a.alert_key AND t.at > ?)",
            (quiet_since,),
        ).fetchall()
        for row in rows:
            alert = dict(row)
            if alert["condition_active"]:
                conn.execute(
                    "UPDATE alerts SET state = 'open', hold_reason = NULL WHERE alert_id = ?",
                    (alert["alert_id"],),
                )
                pages += self._page_if_due(conn, alert["alert_id"], now)[1]
            else:
                pages += self._resolve(conn, alert, now, "flapping ended; condition clear")[1]
        return pages

    def _lift_holds(self, conn: sqlite3.Connection, now: float) -> list[Page]:
        pages: list[Page] = []
        rows = conn.execute(
            "SELECT alert_id FROM alerts WHERE state = 'open' AND notified_at IS NULL"
        ).fetchall()
        for (alert_id,) in rows:
            pages += self._page_if_due(conn, alert_id, now)[1]
        return pages

    def _escalate_overdue(self, conn: sqlite3.Connection, now: float) -> list[Page]:
        pages: list[Page] = []
        rows = conn.execute(
            "SELECT * FROM alerts WHERE state = 'open' AND escalate_at IS NOT NULL"
            " AND escalate_at <= ?",
            (now,),
        ).fetchall()
        for row in rows:
            alert = dict(row)
            ladders = self.policy.ladders
            index = alert["escalation_step"]
            step = ladders.step(alert["team"], alert["severity"], index)
            following = ladders.deadline(
                alert["team"], alert["severity"], index + 1, alert["notified_at"]
            )
            conn.execute(
                "UPDATE alerts SET escalation_step = ?, escalate_at = ? WHERE alert_id = ?",
                (index + 1, following, alert["alert_id"]),
            )
            if step is None:
                continue
            escalated = _row(conn, alert["alert_id"])
            logger.warning("alert %d escalated to %s", alert["alert_id"], step.notify)
            notice = {"event": "escalated", "escalated_to": step.notify, **escalated}
            pages.append((step.notify, notice))
        return pages

    async def _after(self, pages: list[Page]) -> None:
        for team, notice in pages:
            self._notify(team, notice)
        if pages:
            await self.refresh_metrics()
        await asyncio.sleep(0)


def _row(conn: sqlite3.Connection, alert_id: int) -> dict[str, Any]:
    alert = alert_by_id(conn, alert_id)
    if alert is None:
        raise AlertNotFoundError(f"no alert {alert_id}")
    return alert
