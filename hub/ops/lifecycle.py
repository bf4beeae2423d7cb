"""Running the hub as a service: ready and watchdog notices, and a bounded shutdown.

``hallhub run`` goes through `serve()`: it starts the hub, tells systemd it is
ready, feeds the watchdog from the event loop, and on SIGTERM or SIGINT stops the
hub within ``operations.shutdown_timeout`` seconds. The stop finishes the journal
commit in progress, so only committed messages are ever acknowledged to the broker;
what was not yet committed stays unacknowledged and the broker delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from hub.errors import HallhubError
from hub.ops.logsetup import register_secrets
from hub.ops.systemd import Notifier, keep_watchdog_fed, watchdog_interval

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)


class ShutdownTimeout(HallhubError):
    """The hub did not stop within its configured bound."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"hub did not stop within {seconds:g} s")


def operation_tasks(service: HubService) -> list[tuple[str, Awaitable[Any]]]:
    """The background work that keeps a long-running hub's journal in shape.

    Also hands the hub's secrets to the log mask, now that they are loaded.
    """
    from hub.ops.walguard import WalGuard

    register_service_secrets(service)
    guard = WalGuard(service.journal.path, service.config.operations.wal)
    return [("ops-wal-guard", guard.run()), ("ops-retention", service.retention.run())]


def register_service_secrets(service: HubService) -> None:
    """Mask the API token, the MQTT password and the city signing keys in every log line."""
    keys = service.uplink.signing_keys() if service.uplink is not None else []
    register_secrets(
        [service.token, service.ingest.settings.password, *(key.secret.hex() for key in keys)]
    )


async def serve(service: HubService, notifier: Notifier | None = None) -> int:
    """Run `service` until SIGTERM or SIGINT; 0 after a clean stop within the bound."""
    notifier = notifier or Notifier()
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)

    await service.start()
    notifier.send("READY=1")
    watchdog = _start_watchdog(notifier)

    await stop_requested.wait()
    notifier.send("STOPPING=1")
    if watchdog is not None:
        watchdog.cancel()
    return await stop_within(service, service.config.operations.shutdown_timeout)


async def stop_within(service: HubService, seconds: float) -> int:
    """Stop the hub; raise `ShutdownTimeout` if it takes longer than `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            await service.stop()
    except TimeoutError as exc:
        logger.error("hub did not stop within %g s; leaving the rest to the broker", seconds)
        raise ShutdownTimeout(seconds) from exc
    logger.info("hub stopped cleanly")
    return 0


def _start_watchdog(notifier: Notifier) -> asyncio.Task[None] | None:
    interval = watchdog_interval()
    if interval is None or not notifier.enabled:
        return None
    logger.info("feeding the systemd watchdog every %.1f s", interval)
    return asyncio.create_task(keep_watchdog_fed(notifier, interval), name="ops-watchdog")
