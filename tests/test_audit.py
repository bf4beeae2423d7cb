"""The audit trail: changes are kept in order, survive a reopen, and carry who did them."""

from __future__ import annotations

from pathlib import Path

from hub.audit import AuditTrail
from hub.clock import ManualClock
from hub.journal import Journal


async def test_entries_survive_a_reopen_newest_first(tmp_path: Path) -> None:
    """What was recorded before a restart is still there after it, newest first."""
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.sqlite3", "hall-test")
    journal.open()
    trail = AuditTrail(journal, clock)
    await trail.open()
    await trail.record("it-wang", "device.commission", "printer-1", {"zone": "A"})
    await clock.advance(60)
    await trail.record("crew-li", "alert.acknowledge", "alert/7")
    journal.close()

    reopened = Journal(tmp_path / "journal.sqlite3", "hall-test")
    reopened.open()
    try:
        await AuditTrail(reopened, clock).open()
        entries = AuditTrail(reopened, clock).entries()
    finally:
        reopened.close()

    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("crew-li", "alert.acknowledge", "alert/7"),
        ("it-wang", "device.commission", "printer-1"),
    ]
    assert entries[1].detail == {"zone": "A"}
    assert entries[0].at - entries[1].at == 60
