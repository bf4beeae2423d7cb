"""Drain a large backlog to the reference receiver over TLS on loopback; print the rate.

    python -m bench.sync_drain [--events 1000000] [--batch-size 5000] [--quick]

The journal is filled straight through SQLite (the fill is not what is measured),
the receiver runs as its own process with HTTPS and SQLite, and the hub side (this
process) drains with the real `Uplink`. It prints events per second, the hub's
peak resident memory while draining, and checks that the city holds every event
once. Targets from issue 6: at least 50,000 events/s, hub RSS at most 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.report import Row, emit
from hub.clock import SystemClock
from hub.events import Lane
from hub.journal import Journal
from sync.keys import HubKey, write_keys
from sync.tls import ClientTls
from sync.uplink import Uplink
from tests.pki import make_pki

HUB = "bench-hall"
KEY = HubKey("bench-hall.k1", HUB, bytes.fromhex("42" * 32))


def event_rows(count: int) -> Iterator[tuple[object, ...]]:
    """Journal rows: 1 in 100 an alarm, rating or ticket, the rest telemetry."""
    seqs = dict.fromkeys(Lane, 0)
    special = (Lane.ALARM, Lane.RATING, Lane.TICKET)
    for n in range(count):
        lane = special[n % 3] if n % 100 == 0 else Lane.TELEMETRY
        seqs[lane] += 1
        data = json.dumps({"people": n % 57, "zone": "f1-waiting", "window": f"W{n % 12}"})
        at = 1_767_225_600.0 + n / 100
        device = f"counter-{n % 40}"
        yield (lane.value, seqs[lane], f"bench-{n:08d}", 1, device,
               "people_counter", "reading", data, at, 1, None, 0)  # fmt: skip


def fill_journal(path: Path, count: int) -> None:
    journal = Journal(path, HUB)
    journal.open()
    journal.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany(
            "INSERT INTO events (lane, seq, event_id, epoch, device_id, kind, type, data,"
            " received_at, clock_synced, device_time, retained)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            event_rows(count),
        )
    conn.close()


def start_receiver(folder: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    pki = make_pki(folder / "pki", common_name=HUB)
    keys = folder / "keys.json"
    write_keys(keys, {KEY.key_id: KEY})
    command = [sys.executable, "-m", "sync.receiver", "--db", str(folder / "city.db"),
               "--keys", str(keys), "--port", str(port), "--tls-cert", str(pki.server_cert),
               "--tls-key", str(pki.server_key), "--log-level", "WARNING"]  # fmt: skip
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ClientTls(pki.ca_cert).context())
            return process, pki.ca_cert
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def drain(journal_path: Path, url: str, ca_cert: Path, batch_size: int) -> tuple[int, float]:
    journal = Journal(journal_path, HUB)
    journal.open()
    try:
        context = ClientTls(ca_cert).context()
        uplink = Uplink(
            journal, url, KEY.key_id, KEY.secret, SystemClock(), batch_size, ssl_context=context
        )
        started = time.perf_counter()
        total = 0
        async with uplink:
            while sent := await uplink.drain_once():
                total += sent
        return total, time.perf_counter() - started
    finally:
        journal.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    args = parser.parse_args()
    if args.quick:
        args.events = 100_000

    with tempfile.TemporaryDirectory(prefix="hallhub-bench-") as name:
        folder = Path(name)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        fill_started = time.perf_counter()
        fill_journal(folder / "hub.db", args.events)
        print(f"filled {args.events} events in {time.perf_counter() - fill_started:.1f} s")

        receiver, ca_cert = start_receiver(folder, port)
        try:
            # Forget the fill's peak so VmHWM is the drain's own (Linux ≥ 4.0).
            Path("/proc/self/clear_refs").write_text("5")
            rss_before = rss_kib("VmRSS")
            hub_cpu_before = cpu_seconds(resource.RUSAGE_SELF)
            sent, seconds = asyncio.run(
                drain(folder / "hub.db", f"https://127.0.0.1:{port}", ca_cert, args.batch_size)
            )
            hub_cpu = cpu_seconds(resource.RUSAGE_SELF) - hub_cpu_before
            peak = rss_kib("VmHWM")
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=60)
        receiver_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)

        with sqlite3.connect(folder / "city.db") as conn:
            stored, distinct = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events"
            ).fetchone()
        conn.close()

    rate = sent / seconds
    print(f"drained {sent} events in {seconds:.1f} s: {rate:,.0f} events/s (target 50,000)")
    print(f"hub RSS: {rss_before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB while"
          " draining (target 100 MB)")  # fmt: skip
    # CPU per event does not depend on what else the machine is doing; wall time does.
    print(f"CPU: hub {hub_cpu:.1f} s ({sent / hub_cpu:,.0f} events per hub CPU-second),"
          f" receiver {receiver_cpu:.1f} s ({sent / receiver_cpu:,.0f} per receiver CPU-second;"
          " includes its start-up)")  # fmt: skip
    print(f"city holds {stored} events, {distinct} distinct ids (expected {args.events})")
    print(f"target rate {'met' if rate >= 50_000 else 'missed'};"
          f" RSS target {'met' if peak * 1024 <= 100_000_000 else 'missed'}")  # fmt: skip
    emit(
        [
            Row("sync_drain", "drain rate over TLS", rate, "events/s", ">= 50,000 events/s",
                rate >= 50_000),
            Row("sync_drain", "hub peak RSS while draining", peak / 1024, "MiB", "<= 100 MB",
                peak * 1024 <= 100_000_000),
            Row("sync_drain", "events at the city, once each", distinct, "events",
                f"{args.events:,}", stored == distinct == args.events),
        ]
    )  # fmt: skip
    return 0 if stored == distinct == args.events else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
