"""Ticket restart: how soon printers issue tickets again after the hub is killed.

Runs on loopback: a Mosquitto of its own, the hub (``hallhub run``) under a
supervisor that restarts it at once like systemd's ``Restart=always``, and four
simulated printers taking tickets back to back. It kills the hub with SIGKILL
several times and measures, each time, from the kill to the first ticket printed
with a number the restarted hub allocated.

    .venv/bin/python -m bench.ticket_restart [--kills 5]

Target (issue 5): printers issue tickets again within 5 s of the hub being killed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Row, emit
from bench.supervisor import Supervisor
from bench.ticket_hall import CATEGORIES, hub_command, printer_names, write_hall
from devices.simulators.printer import SimulatedTicketPrinter
from devices.simulators.publication_log import PublicationLog
from devices.simulators.ticket_rush import make_printers, rush
from hub.broker import ManagedBroker, pick_free_port

TARGET_S = 5.0
PRINTERS = printer_names(4)
SETTLE_S = 3.0  # tickets flowing steadily before each kill


async def recovery_after_kill(
    supervisor: Supervisor, printers: list[SimulatedTicketPrinter]
) -> float:
    """Kill the hub; seconds until a printer prints a number the new hub allocated."""
    killed_wall = time.time()
    killed = supervisor.kill()
    while True:
        await asyncio.sleep(0.01)
        for printer in printers:
            answer = printer.last_answer
            if answer is not None and answer["issued_at"] > killed_wall:
                return time.monotonic() - killed


async def measure(kills: int, folder: Path) -> list[float]:
    broker = ManagedBroker(folder / "broker", "127.0.0.1", pick_free_port())
    broker.start()
    supervisor = Supervisor(
        hub_command(write_hall(folder, broker.port, PRINTERS)), folder / "hub.log"
    )
    log = PublicationLog(folder / "published.jsonl")
    printers = make_printers(PRINTERS, broker.port, "hall", log)
    supervisor.start()
    try:
        for printer in printers:
            await printer.start()
        taking = asyncio.create_task(rush(printers, 10**9, CATEGORIES))
        times = []
        for _ in range(kills):
            await asyncio.sleep(SETTLE_S)
            times.append(await recovery_after_kill(supervisor, printers))
            print(f"kill {len(times)}: printing again after {times[-1]:.2f} s", flush=True)
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        for printer in printers:
            await printer.stop()
    finally:
        supervisor.stop()
        log.close()
        broker.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a short run (hallhub bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.kills = min(args.kills, 2)
    with tempfile.TemporaryDirectory(prefix="ticket-restart-") as folder:
        times = asyncio.run(measure(args.kills, Path(folder)))
    worst = max(times)
    emit(
        [
            Row(
                "ticket_restart",
                "worst kill -9 to printing again",
                worst,
                "s",
                f"<= {TARGET_S:g} s",
                worst <= TARGET_S,
            ),
            Row(
                "ticket_restart",
                "median kill -9 to printing again",
                statistics.median(times),
                "s",
                "-",
                None,
            ),
        ]
    )
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
