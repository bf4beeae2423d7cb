"""Delivery: every page to every channel of a team, retried, its outcome recorded.

Each (channel, target) is its own task, so a channel that hangs or fails never
delays the others. Attempts back off exponentially with jitter, capped; the final
outcome (delivered or failed, attempts, last error) is written to
``alert_deliveries``. With the WAN down, internet channels fail and retry while the
local ones (MQTT, SMS) deliver as usual.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub import metrics
from hub.alerts.channels import (
    AppriseChannel,
    Channel,
    MqttChannel,
    Publish,
    SmsChannel,
    mail_url,
    redact_url,
)
from hub.alerts.errors import ChannelError
from hub.alerts.modem import GsmModem
from hub.alerts.settings import AlertsSection
from hub.alerts.store import encode_notice
from hub.clock import Clock
from hub.errors import JournalError
from hub.journal import Journal

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notice to one target on one channel."""

    team: str
    channel: Channel
    target: str
    notice: dict[str, Any]
    queued_at: float


class Dispatcher:
    """Fans each page out to the team's channels; callable as the lifecycle's notify."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        settings: AlertsSection,
        channels: dict[str, Channel],
        team_topic: Callable[[str], str],
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._settings = settings
        self.channels = channels
        self._team_topic = team_topic
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    def __call__(self, team: str, notice: dict[str, Any]) -> None:
        if self._closed:
            logger.warning("hub stopping; alert %s not paged", notice["alert_id"])
            return
        now = self._clock.wall()
        for channel_name, target in self.targets(team):
            channel = self.channels.get(channel_name)
            if channel is None:
                logger.warning("team %s wants %s, which is not configured", team, channel_name)
                continue
            delivery = Delivery(team, channel, target, notice, now)
            task = asyncio.create_task(
                self._deliver(delivery), name=f"deliver-{channel_name}-{notice['alert_id']}"
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def targets(self, team: str) -> list[tuple[str, str]]:
        """Every (channel, target) a page for `team` goes to; MQTT first."""
        wanted = [("mqtt", self._team_topic(team))]
        channels = self._settings.teams.get(team)
        if channels is None:
            return wanted
        wanted += [("sms", number) for number in channels.sms]
        wanted += [("webhook", url) for url in channels.webhooks]
        if self._settings.smtp is not None:
            wanted += [("email", mail_url(self._settings.smtp, to)) for to in channels.email]
        return wanted

    async def drain(self) -> None:
        """Wait for every delivery under way (tests, orderly shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def cancel(self) -> None:
        """Stop taking pages and end deliveries under way (the hub is stopping)."""
        self._closed = True
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _deliver(self, delivery: Delivery) -> None:
        retry = self._settings.retry
        error: str | None = None
        attempt = 0
        for attempt in range(1, retry.attempts + 1):
            try:
                await delivery.channel.send(delivery.target, delivery.notice)
            except ChannelError as exc:
                error = exc.reason
            except Exception as exc:  # a channel bug must not end the others' deliveries
                logger.exception("channel %s raised", delivery.channel.name)
                error = f"{type(exc).__name__}: {exc}"
            else:
                error = None
                break
            if attempt < retry.attempts:
                await self._clock.sleep(self._backoff(attempt))
        await self._record(delivery, attempt, error)

    def _backoff(self, attempt: int) -> float:
        retry = self._settings.retry
        ceiling: float = min(retry.max_delay, retry.first_delay * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _record(self, delivery: Delivery, attempts: int, error: str | None) -> None:
        state = "failed" if error else "delivered"
        metrics.ALERT_DELIVERIES.labels(delivery.channel.name, state).inc()
        target = delivery.target if delivery.channel.local else redact_url(delivery.target)
        if error:
            logger.error(
                "alert %s: %s to %s failed after %d attempts: %s",
                delivery.notice["alert_id"],
                delivery.channel.name,
                target,
                attempts,
                error,
            )
        row = {
            "alert_id": delivery.notice["alert_id"],
            "event": delivery.notice["event"],
            "team": delivery.team,
            "channel": delivery.channel.name,
            "target": target,
            "state": state,
            "attempts": attempts,
            "last_error": error,
            "queued_at": delivery.queued_at,
            "finished_at": self._clock.wall(),
        }
        try:
            await self._journal.write(
                lambda conn: conn.execute(
                    "INSERT INTO alert_deliveries (alert_id, event, team, channel, target, state,"
                    " attempts, last_error, queued_at, finished_at) VALUES (:alert_id, :event,"
                    " :team, :channel, :target, :state, :attempts, :last_error, :queued_at,"
                    " :finished_at)",
                    row,
                )
            )
        except JournalError as exc:
            # The page went (or failed) regardless; only its record is missing.
            logger.error(
                "could not record the %s delivery of alert %s: %s",
                delivery.channel.name,
                row["alert_id"],
                exc,
            )


def standard_channels(publish: Publish, modem: GsmModem | None) -> dict[str, Channel]:
    """The four channels hallhub ships; SMS only when a modem is configured."""
    channels: dict[str, Channel] = {
        "mqtt": MqttChannel(publish, encode_notice),
        "webhook": AppriseChannel("webhook"),
        "email": AppriseChannel("email"),
    }
    if modem is not None:
        channels["sms"] = SmsChannel(modem)
    return channels
