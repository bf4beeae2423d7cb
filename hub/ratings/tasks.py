"""Follow-up tasks for bad ratings: due dates on the hall calendar, steps, overdue alerts.

A bad rating (the last two levels) opens a task in the same transaction that chains
the rating. The citizen is to be contacted within `contact_within_working_days` and
the problem fixed within `fix_within_working_days`, both counted in official working
days (`HallCalendar.add_working_days`), a step being due by the end of its date. A
step past its date raises a supervisor condition once; recording the step resolves
it. Each step names who took it and goes to the audit trail.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any, Protocol

from hub.audit import AuditTrail
from hub.calendar import CalendarError, HallCalendar
from hub.clock import Clock
from hub.journal import Journal
from hub.ratings import store
from hub.ratings.errors import TaskNotFoundError, TaskStateError
from hub.ratings.settings import RatingsSection

logger = logging.getLogger(__name__)

RATINGS_SOURCE = "ratings"  # device id of the hub's own rating events and alerts


class AlertRaiser(Protocol):
    """What follow-up tasks need of the alert service (`hub.alerts.AlertService`)."""

    async def raise_condition(
        self,
        device_id: str,
        condition: str,
        severity: str,
        team: str,
        message: str,
        event_id: str | None,
    ) -> dict[str, Any]: ...

    async def clear_condition(
        self, device_id: str, condition: str, by: str = "condition cleared"
    ) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Deadlines:
    """A task's due dates (hall-local dates, due by the end of the day)."""

    contact: str | None
    fix: str | None
    problem: str | None = None


@dataclass(frozen=True)
class TaskStep:
    """One step of a follow-up task: the state it needs, the state it leaves, its name.

    The state it leaves also names the task's columns for who and when
    (``contacted_by``, ``fixed_at``); the name, the column for the note.
    """

    before: str
    after: str
    name: str


def overdue_stages(task: dict[str, Any], today: dt.date) -> list[str]:
    """The steps of `task` past their due date on `today`."""
    late: list[str] = []
    if task["state"] == "open" and _past(task["contact_due"], today):
        late.append("contact")
    if task["state"] != "fixed" and _past(task["fix_due"], today):
        late.append("fix")
    return late


def _past(due: str | None, today: dt.date) -> bool:
    return due is not None and today > dt.date.fromisoformat(due)


class FollowUpTasks:
    """Due dates, steps and overdue alerts of the follow-up tasks."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        calendar: HallCalendar,
        alerts: AlertRaiser,
        audit: AuditTrail,
        settings: RatingsSection,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.calendar = calendar
        self.settings = settings
        self._alerts = alerts
        self._audit = audit

    def deadlines(self, rated_at: float) -> Deadlines:
        """Due dates for a bad rating given at `rated_at`."""
        day = self.calendar.at_wall(rated_at).date()
        contact, contact_problem = self._due(day, self.settings.contact_within_working_days)
        fix, fix_problem = self._due(day, self.settings.fix_within_working_days)
        return Deadlines(contact, fix, contact_problem or fix_problem)

    def _due(self, day: dt.date, working_days: int) -> tuple[str | None, str | None]:
        """The due date `working_days` after `day`, or why the calendar cannot tell."""
        try:
            return self.calendar.add_working_days(day, working_days).isoformat(), None
        except CalendarError as exc:
            logger.error("a follow-up deadline cannot be counted: %s", exc)
            return None, str(exc)

    async def record_contact(self, task_id: int, by: str, note: str) -> dict[str, Any]:
        """Someone contacted the citizen of a bad rating."""
        task = await self._step(task_id, TaskStep("open", "contacted", "contact"), by, note)
        await self._audit.record(
            by, "rating_task_contacted", f"rating_task:{task_id}", {"note": note}
        )
        await self._alerts.clear_condition(RATINGS_SOURCE, _condition(task_id, "contact"), by)
        return task

    async def record_fix(self, task_id: int, by: str, note: str) -> dict[str, Any]:
        """What was fixed for a bad rating; closes the task."""
        task = await self._step(task_id, TaskStep("contacted", "fixed", "fix"), by, note)
        await self._audit.record(by, "rating_task_fixed", f"rating_task:{task_id}", {"note": note})
        for stage in ("contact", "fix"):
            await self._alerts.clear_condition(RATINGS_SOURCE, _condition(task_id, stage), by)
        return task

    async def _step(self, task_id: int, step: TaskStep, by: str, note: str) -> dict[str, Any]:
        now = self.clock.wall()

        def record_step(conn: sqlite3.Connection) -> dict[str, Any] | str | None:
            task = store.task_row(conn, task_id)
            if task is None or task["state"] != step.before:
                return None if task is None else str(task["state"])
            conn.execute(
                f"UPDATE rating_tasks SET state = ?, {step.after}_by = ?, {step.after}_at = ?,"
                f" {step.name}_note = ? WHERE task_id = ?",
                (step.after, by, now, note, task_id),
            )
            return store.task_row(conn, task_id)

        outcome = await self.journal.write(record_step)
        if outcome is None:
            raise TaskNotFoundError(task_id)
        if isinstance(outcome, str):
            raise TaskStateError(task_id, outcome, step.name)
        return outcome

    async def alert_overdue(self) -> int:
        """Raise a supervisor condition for each task step past its due date, once."""
        today = self.calendar.at_wall(self.clock.wall()).date()
        with self.journal.reading() as conn:
            open_tasks = store.tasks(conn, open_only=True)
        raised = 0
        for task in open_tasks:
            for stage in overdue_stages(task, today):
                if stage in task["alerted"].split(","):
                    continue
                await self._raise_overdue(task, stage)
                raised += 1
        return raised

    async def _raise_overdue(self, task: dict[str, Any], stage: str) -> None:
        task_id = task["task_id"]
        due = task["contact_due"] if stage == "contact" else task["fix_due"]
        await self._alerts.raise_condition(
            RATINGS_SOURCE,
            _condition(task_id, stage),
            "high",
            self.settings.supervisor_team,
            f"bad rating ({task['level']}) at window {task['window_id']}: follow-up task "
            f"{task_id} not {'contacted' if stage == 'contact' else 'fixed'} by {due}",
            None,
        )
        alerted = ",".join(filter(None, [task["alerted"], stage]))
        await self.journal.write(
            lambda conn: conn.execute(
                "UPDATE rating_tasks SET alerted = ? WHERE task_id = ?", (alerted, task_id)
            )
        )


def _condition(task_id: int, stage: str) -> str:
    return f"rating_task_overdue:{task_id}:{stage}"


def open_task(
    conn: sqlite3.Connection, fields: dict[str, Any], deadlines: Deadlines | None, now: float
) -> int | None:
    if deadlines is None:
        return None
    cursor = conn.execute(
        "INSERT INTO rating_tasks (rating_id, window_id, level, state, opened_at, contact_due,"
        " fix_due, due_problem) VALUES (?, ?, ?, 'open', ?, ?, ?, ?)",
        (
            fields["rating_id"],
            fields["window"],
            fields["level"],
            now,
            deadlines.contact,
            deadlines.fix,
            deadlines.problem,
        ),
    )
    return int(cursor.lastrowid or 0)
