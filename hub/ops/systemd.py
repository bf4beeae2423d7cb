"""systemd integration: the unit file, and the sd_notify messages the unit expects.

The unit is ``Type=notify``: the hub says ``READY=1`` once it runs, ``STOPPING=1``
when it stops, and ``WATCHDOG=1`` from its event loop every half ``WatchdogSec``.
A loop that hangs stops the pings, and systemd restarts the hub. The protocol is
one datagram per message on the unix socket named by ``$NOTIFY_SOCKET`` (a name
starting with ``@`` is in the abstract namespace); see sd_notify(3).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_UNIT_PATH = Path("/etc/systemd/system/hallhub.service")
DEFAULT_EXECUTABLE = Path("/opt/hallhub/current/bin/hallhub")
DEFAULT_CONFIG = Path("/etc/hallhub/hallhub.yaml")
WATCHDOG_SECONDS = 30
# A start may first back up and migrate a journal of several GB on eMMC.
START_TIMEOUT_SECONDS = 900
# Serial ports (RS-485 adapters, the GSM modem) belong to this group on Debian.
SERIAL_GROUP = "dialout"


class Notifier:
    """Sends sd_notify messages to the service manager, when there is one."""

    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, message: str) -> None:
        """Send one message; a missing or gone manager is logged, never raised."""
        if not self._address:
            return
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall(message.encode())
        except OSError as exc:
            logger.warning("cannot notify the service manager (%s): %s", message, exc)


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None without one."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None


async def keep_watchdog_fed(notifier: Notifier, interval: float) -> None:
    """Ping ``WATCHDOG=1`` from the event loop, so only a live loop keeps the hub alive."""
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class UnitSettings:
    """What the unit file needs to know about this box."""

    config: Path = DEFAULT_CONFIG
    executable: Path = DEFAULT_EXECUTABLE
    user: str = "hallhub"
    state_dir: Path = Path("/var/lib/hallhub")
    shutdown_timeout: float = 10.0
    watchdog_seconds: int = WATCHDOG_SECONDS


def render_unit(settings: UnitSettings) -> str:
    """The text of ``hallhub.service``.

    The hub runs Mosquitto itself (``mqtt.managed: true``) with hub/broker.py's
    production settings. ``KillMode=process`` leaves that broker running across a
    restart of the hub, so its queue survives; the next start stops it gracefully.
    """
    command = shlex.join([str(settings.executable), "run", "--config", str(settings.config)])
    check = shlex.join([str(settings.executable), "config", "check", str(settings.config)])
    # systemd escalates to SIGKILL after TimeoutStopSec; leave the hub its own bound first.
    stop_timeout = int(settings.shutdown_timeout) + 5
    return f"""[Unit]
Description=hallhub, the edge hub of the service hall
After=network-online.target time-sync.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
User={settings.user}
Group={settings.user}
SupplementaryGroups={SERIAL_GROUP}
WorkingDirectory={settings.state_dir}
ExecStartPre={check}
ExecStart={command}
Restart=always
RestartSec=5
WatchdogSec={settings.watchdog_seconds}
TimeoutStartSec={START_TIMEOUT_SECONDS}
TimeoutStopSec={stop_timeout}
KillSignal=SIGTERM
KillMode=process
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ReadWritePaths={settings.state_dir}
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""
