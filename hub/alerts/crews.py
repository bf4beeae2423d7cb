"""Everything about alerts for crews, wired together for one hub.

The hub service builds one `CrewAlerts` and calls `start()` after the journal is
open and `stop()` before it closes; everything in between (ticks, deliveries,
handset and SMS acknowledgements) runs in the tasks started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from hub.alerts.acks import AckDesk
from hub.alerts.crew_mqtt import CrewMqtt
from hub.alerts.delivery import Dispatcher, standard_channels
from hub.alerts.errors import ModemError
from hub.alerts.hours import OpeningHours
from hub.alerts.lifecycle import AlertService, Locate
from hub.alerts.modem import GsmModem
from hub.alerts.replies import SmsReplies
from hub.alerts.settings import AlertsSection
from hub.clock import Clock
from hub.journal import Journal

logger = logging.getLogger(__name__)


class CrewAlerts:
    """Lifecycle, delivery and acknowledgements of one hub's alerts."""

    def __init__(
        self,
        settings: AlertsSection,
        journal: Journal,
        clock: Clock,
        locate: Locate,
        crews_prefix: str,
        broker: tuple[str, int, str],
        hours: OpeningHours | None = None,
        credentials: tuple[str, str | None] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._crews_prefix = crews_prefix
        self.modem = _modem(settings)
        self.dispatcher = Dispatcher(journal, clock, settings, {}, self.team_topic)
        self.alerts = AlertService(journal, clock, self.dispatcher, settings, locate, hours)
        self.desk = AckDesk(self.alerts, journal, clock)
        host, port, client_id = broker
        self.mqtt = CrewMqtt(self.desk, host, port, f"{client_id}-crews", crews_prefix, credentials)
        self.dispatcher.channels.update(standard_channels(self.mqtt.publish, self.modem))
        self.replies = (
            None
            if self.modem is None or settings.modem is None
            else SmsReplies(self.modem, self.desk, clock, settings.modem.poll_interval)
        )
        self._tasks: list[asyncio.Task[Any]] = []

    def team_topic(self, team: str) -> str:
        """The MQTT topic a team's handhelds subscribe to."""
        return f"{self._crews_prefix}/{team}/alerts"

    async def start(self) -> None:
        """Migrate the tables, open the modem, start ticking and listening."""
        await self.alerts.start()
        await self._open_modem()
        self.mqtt.start(asyncio.get_running_loop())
        self._tasks.append(asyncio.create_task(self.alerts.run(), name="alerts-tick"))
        if self.replies is not None:
            task = asyncio.create_task(self.replies.run(), name="alerts-sms-replies")
            self._tasks.append(task)

    async def stop(self) -> None:
        self.mqtt.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.dispatcher.cancel()
        if self.modem is not None:
            self.modem.close()

    async def _open_modem(self) -> None:
        if self.modem is None:
            return
        try:
            await asyncio.to_thread(self.modem.open)
        except ModemError as exc:
            # SMS deliveries will fail and be recorded; every other channel works.
            logger.error("GSM modem unusable, SMS pages will fail: %s", exc)


def _modem(settings: AlertsSection) -> GsmModem | None:
    if settings.modem is None:
        return None
    return GsmModem(settings.modem.port, settings.modem.baudrate, settings.modem.timeout)
