"""Never a duplicate: printers rush a hub that is killed with SIGKILL again and again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.supervisor import Supervisor
from bench.ticket_hall import CATEGORIES, hub_command, printer_names, write_hall
from devices.simulators.publication_log import PublicationLog
from devices.simulators.ticket_rush import make_printers, reckon, rush
from hub.broker import ManagedBroker

PRINTERS = printer_names(8)
TOTAL = 10_000
KILL_AT = (2_000, 4_500, 7_000)


async def test_ten_thousand_tickets_across_kills_no_duplicate_no_unseen_gap(
    fresh_broker: ManagedBroker, tmp_path: Path
) -> None:
    """Eight printers take 10,000 tickets while the hub (``hallhub run`` under a
    restarting supervisor) is killed with SIGKILL three times. No number is printed
    twice, numbering has no holes, and every allocated number was either printed or
    belongs to a request its printer answered with "please wait"."""
    supervisor = Supervisor(
        hub_command(write_hall(tmp_path, fresh_broker.port, PRINTERS)), tmp_path / "hub.log"
    )
    log = PublicationLog(tmp_path / "published.jsonl")
    printers = make_printers(PRINTERS, fresh_broker.port, "hall", log)
    kills_due = list(KILL_AT)

    def kill_on_schedule(printed: int) -> None:
        if kills_due and printed >= kills_due[0]:
            kills_due.pop(0)
            supervisor.kill()

    supervisor.start()
    try:
        for printer in printers:
            await printer.start()
        await rush(printers, TOTAL, CATEGORIES, kill_on_schedule)
        for printer in printers:
            await printer.stop()
    finally:
        status = supervisor.stop()
        log.close()

    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as journal:
        reckoning = reckon(printers, journal)
    assert supervisor.kills == 3 and supervisor.starts == 4 and status == 0
    assert reckoning.printed >= TOTAL
    assert reckoning.printed_twice == []
    assert reckoning.printed_unallocated == []
    assert reckoning.numbering_gaps == []
    assert reckoning.unaccounted == []
    assert reckoning.allocated == reckoning.printed + len(
        [1 for p in printers for r in p.unanswered if _allocated(tmp_path, p.device_id, r)]
    )


def _allocated(tmp_path: Path, printer: str, request_id: str) -> bool:
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as journal:
        row = journal.execute(
            "SELECT 1 FROM tickets WHERE printer = ? AND request_id = ?", (printer, request_id)
        ).fetchone()
    return row is not None
