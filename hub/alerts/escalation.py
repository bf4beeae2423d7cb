"""Escalation ladders: who else is paged, and when, while nobody acknowledges.

The routed team (the duty desk, say) is the first rung; each step adds a role
(crew lead, supervisor) a fixed time after the first page. Times are wall-clock
deadlines stored with the alert, so a restarted hub carries on where it stopped.
"""

from __future__ import annotations

from hub.alerts.settings import EscalationStep


class Ladders:
    """Ladders per severity, with per-team overrides."""

    def __init__(
        self,
        by_severity: dict[str, list[EscalationStep]],
        by_team: dict[str, dict[str, list[EscalationStep]]],
    ) -> None:
        self._by_severity = by_severity
        self._by_team = by_team

    def steps(self, team: str, severity: str) -> list[EscalationStep]:
        team_ladders = self._by_team.get(team, {})
        if severity in team_ladders:
            return team_ladders[severity]
        return self._by_severity.get(severity, [])

    def first_deadline(self, team: str, severity: str, paged_at: float) -> float | None:
        """When the first step is due, for an alert first paged at `paged_at`."""
        return self.deadline(team, severity, 0, paged_at)

    def deadline(self, team: str, severity: str, step: int, paged_at: float) -> float | None:
        steps = self.steps(team, severity)
        if step >= len(steps):
            return None
        return paged_at + steps[step].after

    def step(self, team: str, severity: str, step: int) -> EscalationStep | None:
        steps = self.steps(team, severity)
        return steps[step] if step < len(steps) else None
