"""A real journal and an alert service on a manual clock, for alert tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from hub.alerts import AlertService, AlertsSection, DevicePlace
from hub.clock import ManualClock
from hub.journal import Journal

PLACES = {
    "alarm-1": DevicePlace("toilet_alarm", "f1-accessible-wc", 1),
    "printer-1": DevicePlace("printer", "f2-windows", 2),
    "kiosk-1": DevicePlace("kiosk", "f1-lobby", 1),
}

# 2026-01-05 10:00 Asia/Shanghai, a Monday while the hall is open.
MONDAY_10AM = 1_767_578_400.0


class Pages:
    """What the service handed out to crews, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, team: str, notice: dict[str, Any]) -> None:
        self.sent.append((team, notice))

    def events(self) -> list[tuple[str, str]]:
        return [(team, notice["event"]) for team, notice in self.sent]


@asynccontextmanager
async def alert_service(
    path: Path, settings: dict[str, Any] | None = None, wall: float = MONDAY_10AM
) -> AsyncIterator[tuple[AlertService, ManualClock, Pages, Journal]]:
    """An alert service over a real SQLite journal at `path`, time in the test's hands."""
    journal = Journal(path, "hall-test")
    journal.open()
    clock = ManualClock(wall=wall)
    pages = Pages()
    service = AlertService(
        journal,
        clock,
        pages,
        AlertsSection.model_validate(settings or {}),
        lambda device_id: PLACES.get(device_id, DevicePlace()),
    )
    await service.start()
    try:
        yield service, clock, pages, journal
    finally:
        journal.close()


def rows(journal: Journal, sql: str, *args: Any) -> list[dict[str, Any]]:
    with journal.reading() as conn:
        return [dict(row) for row in conn.execute(sql, args)]
