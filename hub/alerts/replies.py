"""SMS replies: crews acknowledge by texting ``ACK 12`` back to the hall's modem.

The modem is polled (``AT+CMGL``) every `poll_interval` on the injected clock; a
``+CMTI`` seen meanwhile only marks that something waits. Each message is read once
and deleted from the SIM, then handed to the `AckDesk`.
"""

from __future__ import annotations

import asyncio
import logging

from hub.alerts.acks import AckDesk, AckRequest, parse_reply
from hub.alerts.errors import ModemError
from hub.alerts.modem import GsmModem, IncomingSms
from hub.clock import Clock

logger = logging.getLogger(__name__)


class SmsReplies:
    """Reads the modem's inbox and acts on acknowledgements in it."""

    def __init__(self, modem: GsmModem, desk: AckDesk, clock: Clock, interval: float) -> None:
        self._modem = modem
        self._desk = desk
        self._clock = clock
        self._interval = interval
        self._outage_logged = False

    async def run(self) -> None:
        """Poll until cancelled; a modem failure is logged once and polling goes on."""
        while True:
            await self._clock.sleep(self._interval)
            await self.poll()

    async def poll(self) -> int:
        """Read the inbox once; returns how many messages were handled."""
        try:
            messages = await asyncio.to_thread(self._modem.read_unread)
        except ModemError as exc:
            if not self._outage_logged:
                logger.error("cannot read SMS replies: %s", exc)
                self._outage_logged = True
            return 0
        self._outage_logged = False
        for message in messages:
            await self._handle(message)
        return len(messages)

    async def _handle(self, message: IncomingSms) -> None:
        parsed = parse_reply(message.text)
        if parsed is None:
            request = AckRequest("sms", message.sender, "ack", 0, message.text)
            await self._desk.refuse(request, "not ACK <id> or RESOLVE <id>")
            return
        action, alert_id = parsed
        await self._desk.handle(AckRequest("sms", message.sender, action, alert_id, message.text))
