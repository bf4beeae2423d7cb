"""Readiness: whether this hub can do its job right now, check by check.

Liveness (``/healthz``) only says the process answers. Readiness (``/readyz``)
says the hub is connected to its broker, can commit to its journal, has its
rules loaded and trusts its clock; a supervisor or load balancer waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.errors import JournalError

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)

JOURNAL_PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Check:
    """One readiness check and why it passed or failed."""

    name: str
    ok: bool
    detail: str


async def check_readiness(service: HubService) -> list[Check]:
    """Every readiness check of `service`, in a fixed order."""
    return [
        _broker(service),
        await _journal(service),
        _rules(service),
        _clock(service),
    ]


def readiness_body(checks: list[Check]) -> dict[str, Any]:
    """The JSON answer of ``/readyz``."""
    return {
        "ready": all(check.ok for check in checks),
        "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
    }


def _broker(service: HubService) -> Check:
    settings = service.ingest.settings
    where = f"{settings.host}:{settings.port}"
    if service.ingest.connected:
        return Check("broker", True, f"connected to {where}")
    return Check("broker", False, f"not connected to {where}")


async def _journal(service: HubService) -> Check:
    """A write transaction round trip through the journal's one writer."""
    try:
        async with asyncio.timeout(JOURNAL_PROBE_TIMEOUT):
            await service.journal.write(lambda conn: conn.execute("SELECT 1").fetchone())
    except TimeoutError:
        return Check("journal", False, f"writer busy for over {JOURNAL_PROBE_TIMEOUT:g} s")
    except JournalError as exc:
        return Check("journal", False, str(exc))
    return Check("journal", True, "writable")


def _rules(service: HubService) -> Check:
    count = len(service.rules.engine.rules)
    error = service.rules.watcher.last_error
    if count == 0:
        return Check("rules", False, "no rules loaded")
    detail = f"{count} rules loaded"
    return Check("rules", True, f"{detail}; last reload refused: {error}" if error else detail)


def _clock(service: HubService) -> Check:
    if service.clock.is_synchronised():
        return Check("clock", True, "synchronised")
    return Check("clock", False, "not synchronised (waiting for NTP)")
