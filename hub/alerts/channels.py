"""The channels that carry a page to people: MQTT, SMS, webhook and e-mail.

Each channel sends one notice to one target and raises `ChannelError` when that
attempt failed; retrying and recording is the dispatcher's job. MQTT and SMS are
local (they work with the WAN down); webhooks and e-mail go through apprise, so any
URL apprise knows (``json://``, ``wecombot://``, ``mailto://`` …) can be configured.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

from hub.alerts.errors import ChannelError
from hub.alerts.modem import GsmModem
from hub.alerts.settings import Smtp

with warnings.catch_warnings():
    # apprise's e-mail plugin imports the standard library's imghdr, deprecated in 3.11
    # and unused by hallhub; the warning says nothing about our code.
    warnings.simplefilter("ignore", DeprecationWarning)
    import apprise
    import apprise.plugins.email

logger = logging.getLogger(__name__)

# apprise logs each full target URL at DEBUG; webhook URLs carry their secret in the
# path, and secrets are never logged, even with ``--log-level DEBUG``.
logging.getLogger("apprise").setLevel(logging.INFO)

Publish = Callable[[str, bytes], None]


class Channel(Protocol):
    """Sends one notice to one target."""

    name: str
    local: bool

    async def send(self, target: str, notice: dict[str, Any]) -> None:
        """Deliver or raise `ChannelError`."""
        ...


def headline(notice: dict[str, Any]) -> str:
    """One line a person can act on, and how to acknowledge by SMS."""
    event = notice["event"]
    alert_id = notice["alert_id"]
    line = f"[{notice['severity']}] #{alert_id} {event}: {notice['message']}"
    if event in ("opened", "escalated"):
        line += f" - reply ACK {alert_id}"
    return line


class MqttChannel:
    """The team's topic, for handhelds; the hub's own broker, so always local."""

    name = "mqtt"
    local = True

    def __init__(self, publish: Publish, encode: Callable[[dict[str, Any]], bytes]) -> None:
        self._publish = publish
        self._encode = encode

    async def send(self, target: str, notice: dict[str, Any]) -> None:
        try:
            self._publish(target, self._encode(notice))
        except Exception as exc:
            raise ChannelError(self.name, target, str(exc)) from exc


class SmsChannel:
    """SMS through the hall's GSM modem: needs no WAN."""

    name = "sms"
    local = True

    def __init__(self, modem: GsmModem) -> None:
        self._modem = modem

    async def send(self, target: str, notice: dict[str, Any]) -> None:
        await asyncio.to_thread(self._modem.send_sms, target, headline(notice))


class AppriseChannel:
    """Webhooks and e-mail through apprise; each target is an apprise URL."""

    local = False

    def __init__(self, name: str, timeout: float = 10.0) -> None:
        self.name = name
        self._timeout = timeout

    async def send(self, target: str, notice: dict[str, Any]) -> None:
        sender = apprise.Apprise()
        if not sender.add(target):
            raise ChannelError(self.name, redact_url(target), "not a URL apprise understands")
        title = f"hallhub alert #{notice['alert_id']} {notice['event']}"
        try:
            async with asyncio.timeout(self._timeout):
                sent = await asyncio.to_thread(sender.notify, body=headline(notice), title=title)
        except TimeoutError as exc:
            raise ChannelError(self.name, redact_url(target), "timed out") from exc
        if not sent:
            raise ChannelError(self.name, redact_url(target), "refused or unreachable")


def mail_url(smtp: Smtp, address: str) -> str:
    """The apprise URL that mails `address` through the configured server, no TLS."""
    return (
        f"mailto://{smtp.host}:{smtp.port}?mode=insecure"
        f"&from={quote(smtp.sender)}&to={quote(address)}"
    )


def redact_url(url: str) -> str:
    """A target URL fit for logs: webhook URLs often carry their secret in the path."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…" if rest else url
