"""SMS replies: crews acknowledge by texting ``ACK 12`` back to the hall's modem.

Between commands the port is watched for ``+CMTI`` (a new message), which makes the
hub read the inbox (``AT+CMGL``) at once; the inbox is also read every
`poll_interval` in case an indication was missed. Each message is read once and
deleted from the SIM, then handed to the `AckDesk`.
"""

from __future__ import annotations

import asyncio
import logging

from hub.alerts.acks import AckDesk, AckRequest, parse_reply
from hub.alerts.errors import ModemError
from hub.alerts.modem import GsmModem, IncomingSms
from hub.clock import Clock

logger = logging.getLogger(__name__)

# How long one watch holds the modem; an SMS page waits at most this long for it.
LISTEN_WINDOW = 0.3


class SmsReplies:
    """Reads the modem's inbox and acts on acknowledgements in it."""

    def __init__(self, modem: GsmModem, desk: AckDesk, clock: Clock, interval: float) -> None:
        self._modem = modem
        self._desk = desk
        self._clock = clock
        self._interval = interval
        self._outage_logged = False

    async def run(self) -> None:
        """Watch and poll until cancelled; a modem failure is logged once, then retried."""
        last_poll = self._clock.monotonic()
        while True:
            try:
                announced = await asyncio.to_thread(self._modem.listen, LISTEN_WINDOW)
            except ModemError as exc:
                self._report_outage(exc)
                await self._clock.sleep(self._interval)
                continue
            if announced or self._clock.monotonic() - last_poll >= self._interval:
                last_poll = self._clock.monotonic()
                try:
                    await self.poll()
                except Exception:  # a journal outage must not end SMS acknowledgements
                    logger.exception("handling SMS replies failed; reading on")
            await asyncio.sleep(0)  # let a waiting page take the modem

    async def poll(self) -> int:
        """Read the inbox once; returns how many messages were handled."""
        try:
            messages = await asyncio.to_thread(self._modem.read_unread)
        except ModemError as exc:
            self._report_outage(exc)
            return 0
        self._outage_logged = False
        for message in messages:
            await self._handle(message)
        return len(messages)

    def _report_outage(self, exc: ModemError) -> None:
        if not self._outage_logged:
            logger.error("cannot read SMS replies: %s", exc)
            self._outage_logged = True

    async def _handle(self, message: IncomingSms) -> None:
        parsed = parse_reply(message.text)
        if parsed is None:
            request = AckRequest("sms", message.sender, "ack", 0, message.text)
            await self._desk.refuse(request, "not ACK <id> or RESOLVE <id>")
            return
        action, alert_id = parsed
        await self._desk.handle(AckRequest("sms", message.sender, action, alert_id, message.text))
