"""The dispatcher on its own: a page goes out even when its record cannot be kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.alerts import AlertsSection
from hub.alerts.channels import MqttChannel
from hub.alerts.delivery import Dispatcher
from hub.alerts.schema import migrate
from hub.alerts.store import encode_notice
from hub.clock import ManualClock
from hub.errors import JournalError
from hub.journal import Journal
from tests.alerts.kit import rows


async def test_page_goes_out_when_the_journal_is_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk loses the delivery record, not the page; the loss is logged."""
    journal = Journal(tmp_path / "j.sqlite3", "hall-test")
    journal.open()
    published: list[tuple[str, bytes]] = []
    notice: dict[str, Any] = {"event": "opened", "alert_id": 7, "severity": "urgent"}
    notice["message"] = "call"
    dispatcher = Dispatcher(
        journal,
        ManualClock(),
        AlertsSection(),
        {"mqtt": MqttChannel(lambda topic, body: published.append((topic, body)), encode_notice)},
        lambda team: f"crews/{team}/alerts",
    )
    try:
        await journal.write(migrate)
        journal.set_size_limit(journal.path.stat().st_size).result(timeout=5)
        await _fill(journal)
        dispatcher("duty_desk", notice)
        await dispatcher.drain()
        journal.set_size_limit(None).result(timeout=5)
        recorded = rows(journal, "SELECT * FROM alert_deliveries WHERE event = 'opened'")
    finally:
        journal.close()

    assert published == [("crews/duty_desk/alerts", encode_notice(notice))]
    assert recorded == []
    assert "could not record the mqtt delivery of alert 7" in caplog.text


async def _fill(journal: Journal) -> None:
    """Write ever smaller rows until even a small one no longer fits."""
    for size in (4000, 1000, 200, 40):
        for _ in range(500):
            try:
                await journal.write(
                    lambda conn, size=size: conn.execute(
                        "INSERT INTO alert_deliveries (event, team, channel, target, state,"
                        " attempts, last_error, queued_at, finished_at)"
                        " VALUES ('filler', '', '', '', 'failed', 0, zeroblob(?), 0, 0)",
                        (size,),
                    )
                )
            except JournalError:
                break
