"""A rush at the ticket printers, and the reckoning of every number afterwards.

Each printer takes tickets back to back until the hall has printed the target
number. Afterwards `reckon` compares what the hub allocated (its ``tickets`` table)
with what the printers printed and with the requests they gave up on ("please
wait"), so a test can prove that no number was printed twice and that every
allocated number is accounted for.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devices.profiles import load_models, shipped_models_dir
from devices.simulators.printer import SimulatedTicketPrinter
from devices.simulators.publication_log import PublicationLog
from hub.clock import SystemClock


@dataclass
class Reckoning:
    """What the comparison found; empty lists mean nothing was lost or doubled."""

    allocated: int
    printed: int
    waited: int
    printed_twice: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)
    printed_unallocated: list[str] = field(default_factory=list)
    numbering_gaps: list[str] = field(default_factory=list)


def make_printers(
    names: list[str], port: int, topic_root: str, log: PublicationLog, **options: Any
) -> list[SimulatedTicketPrinter]:
    """Simulated ticket-printer-tp80 printers on the real clock, not yet started."""
    model = load_models(shipped_models_dir())["ticket-printer-tp80"]
    return [
        SimulatedTicketPrinter(
            name,
            model,
            clock=SystemClock("assume"),
            publication_log=log,
            port=port,
            topic_root=topic_root,
            **options,
        )
        for name in names
    ]


async def rush(
    printers: list[SimulatedTicketPrinter],
    total: int,
    categories: tuple[str, ...],
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Take tickets on every printer at once until `total` are printed."""

    def printed() -> int:
        return sum(len(printer.printed) for printer in printers)

    for printer in printers:
        printer.paper_left = total  # a long roll: the rush is about numbers, not paper

    async def keep_taking(printer: SimulatedTicketPrinter, offset: int) -> None:
        turn = offset
        while printed() < total:
            await printer.take_ticket(categories[turn % len(categories)])
            turn += 1
            if on_progress is not None:
                on_progress(printed())

    await asyncio.gather(*(keep_taking(p, n) for n, p in enumerate(printers)))


def reckon(printers: list[SimulatedTicketPrinter], journal: sqlite3.Connection) -> Reckoning:
    """Compare the hub's allocations with the printers' own logs."""
    rows = journal.execute(
        "SELECT service_day, category, number, label, printer, request_id FROM tickets"
    ).fetchall()
    allocated = {(row[4], row[5]): f"{row[0]} {row[3]}" for row in rows}
    printed = {
        (printer.device_id, request_id): label
        for printer in printers
        for request_id, label in printer.printed.items()
    }
    waited = {(p.device_id, request_id) for p in printers for request_id in p.unanswered}

    # A printed number counts in the service day the hub allocated its request in.
    labels = Counter(
        f"{allocated.get(key, '?').split(' ')[0]} {label}" for key, label in printed.items()
    )
    result = Reckoning(len(allocated), len(printed), len(waited))
    result.printed_twice = sorted(label for label, times in labels.items() if times > 1)
    result.unaccounted = sorted(
        label for key, label in allocated.items() if key not in printed and key not in waited
    )
    result.printed_unallocated = sorted(
        label for key, label in printed.items() if not allocated.get(key, "").endswith(label)
    )
    result.numbering_gaps = _gaps(rows)
    return result


def _gaps(rows: list[sqlite3.Row] | list[tuple[object, ...]]) -> list[str]:
    """Numbers missing below the highest allocated one, per service day and category."""
    numbers: dict[tuple[object, object], set[int]] = defaultdict(set)
    for row in rows:
        numbers[(row[0], row[1])].add(int(str(row[2])))
    return [
        f"{day} {category}{missing:03d}"
        for (day, category), taken in sorted(numbers.items(), key=str)
        for missing in sorted(set(range(1, max(taken) + 1)) - taken)
    ]
