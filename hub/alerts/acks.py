"""Acknowledgements from crews' devices: who may act on which alert, and refusals.

A handset may act only for its own team (the handset → team map in ``alerts:``),
matching the Mosquitto ACL that lets it publish only on its team's topic; an SMS
reply counts only from a number listed for the alert's team or a role the alert has
escalated to. Every refusal is logged and kept in ``alert_ack_refusals``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from hub import metrics
from hub.alerts.errors import AlertError
from hub.alerts.lifecycle import AlertService
from hub.alerts.store import alert_by_id
from hub.clock import Clock
from hub.journal import Journal

logger = logging.getLogger(__name__)

Action = Literal["ack", "resolve"]
_REPLY = re.compile(r"^\s*(ack|ok|resolve|done)\s*#?(\d+)\s*$", re.IGNORECASE)
_REPLY_ACTIONS: dict[str, Action] = {
    "ack": "ack",
    "ok": "ack",
    "resolve": "resolve",
    "done": "resolve",
}


@dataclass(frozen=True, slots=True)
class AckRequest:
    """Someone asks to acknowledge or resolve an alert."""

    source: str  # "mqtt" or "sms"
    sender: str  # handset id or phone number
    action: Action
    alert_id: int
    raw: str


def parse_reply(text: str) -> tuple[Action, int] | None:
    """``ACK 12``, ``ok 12``, ``RESOLVE 12`` or ``done #12``; None for anything else."""
    match = _REPLY.match(text)
    if match is None:
        return None
    return _REPLY_ACTIONS[match.group(1).lower()], int(match.group(2))


class AckDesk:
    """Checks that the sender may act on the alert, then acts, or records a refusal."""

    def __init__(self, alerts: AlertService, journal: Journal, clock: Clock) -> None:
        self._alerts = alerts
        self._journal = journal
        self._clock = clock

    async def handle(self, request: AckRequest, team_topic: str | None = None) -> bool:
        """Act on `request`; False (and a kept refusal) if it is not allowed or fails."""
        reason = self._refusal(request, team_topic)
        if reason:
            await self.refuse(request, reason)
            return False
        who = f"{request.source}:{request.sender}"
        try:
            if request.action == "ack":
                await self._alerts.acknowledge(request.alert_id, who)
            else:
                await self._alerts.resolve(request.alert_id, who)
        except AlertError as exc:
            await self.refuse(request, str(exc))
            return False
        return True

    async def refuse(self, request: AckRequest, reason: str) -> None:
        logger.warning(
            "refused %s of alert %s from %s %s: %s",
            request.action,
            request.alert_id,
            request.source,
            request.sender,
            reason,
        )
        metrics.ACK_REFUSALS.labels(request.source).inc()
        now = self._clock.wall()
        await self._journal.write(
            lambda conn: conn.execute(
                "INSERT INTO alert_ack_refusals (at, source, sender, reason, raw)"
                " VALUES (?, ?, ?, ?, ?)",
                (now, request.source, request.sender[:64], reason, request.raw[:500]),
            )
        )

    def _refusal(self, request: AckRequest, team_topic: str | None) -> str:
        with self._journal.reading() as conn:
            alert = alert_by_id(conn, request.alert_id)
        if alert is None:
            return f"no alert {request.alert_id}"
        allowed = self._teams_paged(alert["team"], alert["severity"], alert["escalation_step"])
        if request.source == "mqtt":
            team = self._alerts.settings.handsets.get(request.sender)
            if team is None:
                return f"handset {request.sender} is in no team"
            if team != team_topic:
                return f"handset {request.sender} belongs to {team}, not {team_topic}"
            if team not in allowed:
                return f"alert {request.alert_id} is not for team {team}"
            return ""
        numbers = {number for team in allowed for number in self._team_numbers(team)}
        if request.sender not in numbers:
            return f"{request.sender} is not a number of a team paged for this alert"
        return ""

    def _teams_paged(self, team: str, severity: str, steps_done: int) -> set[str]:
        ladders = self._alerts.policy.ladders
        roles = {step.notify for step in ladders.steps(team, severity)[:steps_done]}
        return {team, *roles}

    def _team_numbers(self, team: str) -> list[str]:
        channels = self._alerts.settings.teams.get(team)
        return [] if channels is None else channels.sms
