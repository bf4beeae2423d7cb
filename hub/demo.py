"""``hallhub demo``: a whole hall on one machine, from one command.

Starts a Mosquitto broker as the hub's child process, the reference city receiver
as a separate process, a simulated hall (ticket printers, rating pads, toilet
alarms, occupancy sensors, one of them over Modbus TCP) and the hub itself. While it
runs it presses and resets toilet alarms and cuts the city link for a few seconds.

With ``--for SECONDS`` it stops by itself and prints one JSON summary that reconciles,
by event id, what the devices published, what the journal holds and what the city
received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devices.simulators.hall import SimulatedHall
from devices.simulators.ticket_rush import reckon
from hub.broker import Broker, pick_free_port, start_broker
from hub.config import HubConfig
from hub.privatefile import write_private
from hub.reconcile import published_ids, reconcile, stored_ids
from hub.service import HubService
from hub.statelock import StateLock
from sync.keys import add_key

logger = logging.getLogger(__name__)

HUB_ID = "hall-demo"
LOOPBACK = "127.0.0.1"
RECEIVER_OUTAGE = 5.0
SETTLE_TIMEOUT = 60.0
# The demo hall's queue: the printers' two categories, served at windows W01-W06.
DEMO_TICKETS: dict[str, Any] = {
    "categories": {"A": {"name": "综合受理 General"}, "B": {"name": "税务 Tax"}},
    "windows": {f"W{n:02d}": {"categories": ["A", "B"]} for n in range(1, 7)},
}


@dataclass
class DemoPlan:
    """When the demo presses alarms and cuts the city link, in seconds from start."""

    outage_at: float = 12.0
    first_press_at: float = 4.0
    press_every: float = 20.0
    reset_after: float = 6.0
    call_every: float = 8.0


class CityReceiverProcess:
    """The reference city receiver, run as a separate process that can be killed."""

    def __init__(self, state_dir: Path, keys_path: Path) -> None:
        self.state_dir = state_dir
        self.db_path = state_dir / "city.sqlite3"
        self.keys_path = keys_path
        self.port = pick_free_port(LOOPBACK)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "sync.receiver",
            "--db",
            str(self.db_path),
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--keys",
            str(self.keys_path),
        ]
        with (self.state_dir / "receiver.log").open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log)
        _wait_for_http(f"{self.url}/healthz", timeout=15)
        logger.info("city receiver up at %s (pid %d)", self.url, self._process.pid)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or a cut cable would look to the hub."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            logger.info("city receiver killed")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def _wait_for_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def demo_config(
    state_dir: Path,
    broker: Broker,
    hall: SimulatedHall,
    city_url: str,
    key_id: str,
    console_port: int,
) -> HubConfig:
    """The hall configuration the demo runs with; also written to the state folder."""
    document: dict[str, Any] = {
        "hub": {"id": HUB_ID, "state_dir": str(state_dir / "hub"), "clock_sync": "assume"},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "topic_root": "hall",
            "protocol": "5" if broker.supports_mqtt5 else "3.1.1",
        },
        "console": {"host": LOOPBACK, "port": console_port},
        "city": {
            "url": city_url,
            "key_id": key_id,
            "secret_file": str(state_dir / "hub" / "city-secret"),
        },
        "devices": hall.hub_devices_config(),
        "tickets": DEMO_TICKETS,
    }
    (state_dir / "hallhub.yaml").write_text(
        yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return HubConfig.model_validate(document)


class Demo:
    """Everything the demo runs, started and stopped in order."""

    def __init__(self, state_dir: Path, console_port: int, plan: DemoPlan) -> None:
        self.state_dir = state_dir
        self.plan = plan
        self.console_port = console_port
        # One demo per folder: a second one would stop the first one's broker.
        self.lock = StateLock(state_dir)
        self.lock.acquire()
        self.broker = start_broker(state_dir / "broker", LOOPBACK)
        key = add_key(state_dir / "city" / "keys.json", HUB_ID)
        write_private(state_dir / "hub" / "city-secret", key.secret.hex() + "\n")
        self.key_id = key.key_id
        self.receiver = CityReceiverProcess(state_dir / "city", state_dir / "city" / "keys.json")
        self.publication_log = state_dir / "simulators" / "published.jsonl"
        self.hall: SimulatedHall | None = None
        self.hub: HubService | None = None
        self.alarm_presses = 0
        self.city_outages = 0

    async def start(self) -> HubService:
        self.broker.start()
        self.receiver.start()
        self.publication_log.parent.mkdir(parents=True, exist_ok=True)
        self.hall = SimulatedHall(
            broker_host=self.broker.host,
            broker_port=self.broker.port,
            topic_root="hall",
            publication_log=self.publication_log,
        )
        config = demo_config(
            self.state_dir,
            self.broker,
            self.hall,
            self.receiver.url,
            self.key_id,
            self.console_port,
        )
        self.hub = HubService(config)
        await self.hub.start()
        # The hub's subscription must exist before the devices publish: the broker
        # queues for a session it knows, and drops what matches no subscription.
        if not await asyncio.to_thread(self.hub.ingest.wait_subscribed, 15):
            raise RuntimeError("the hub did not subscribe to the demo broker within 15 s")
        if not await asyncio.to_thread(self.hub.ticket_desk.wait_subscribed, 15):
            raise RuntimeError("the ticket desk did not subscribe within 15 s")
        await self.hall.start()
        return self.hub

    async def script(self) -> None:
        """Press and reset toilet alarms, and cut the city link once."""
        assert self.hall is not None
        started = time.monotonic()
        tasks = [
            asyncio.create_task(self._cut_city_link(started), name="demo-city-outage"),
            asyncio.create_task(self._press_alarms(started), name="demo-alarm-presses"),
            asyncio.create_task(self._serve_tickets(), name="demo-ticket-calls"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _cut_city_link(self, started: float) -> None:
        await _sleep_until(started + self.plan.outage_at)
        logger.info("demo: killing the city receiver for %g s", RECEIVER_OUTAGE)
        self.receiver.kill()
        self.city_outages += 1
        await asyncio.sleep(RECEIVER_OUTAGE)
        await asyncio.to_thread(self.receiver.start)

    async def _press_alarms(self, started: float) -> None:
        assert self.hall is not None
        alarms = list(self.hall.alarms.values())
        at = started + self.plan.first_press_at
        for turn in range(10_000):
            alarm = alarms[turn % len(alarms)]
            await _sleep_until(at)
            logger.info("demo: pressing toilet alarm %s", alarm.device_id)
            alarm.press()
            self.alarm_presses += 1
            await asyncio.sleep(self.plan.reset_after)
            logger.info("demo: resetting toilet alarm %s", alarm.device_id)
            alarm.reset()
            at += self.plan.press_every

    async def _serve_tickets(self) -> None:
        """A citizen at each printer, then window W01 calls the next ticket now and then."""
        assert self.hall is not None and self.hub is not None
        await self.hub.tickets.set_window_state("W01", "open", "demo")
        for printer in self.hall.printers.values():
            await printer.take_ticket()
        while True:
            await asyncio.sleep(self.plan.call_every)
            await self.hub.tickets.call_next("W01", "demo")

    async def settle(self) -> None:
        """Let the journal take every published event, stop inputs, drain to the city."""
        assert self.hub is not None
        deadline = time.monotonic() + SETTLE_TIMEOUT
        await _wait_for(self._journal_has_all_published, deadline)
        await self.hub.quiesce()
        if not self.receiver.running:  # the run ended inside the outage: the city comes back
            await asyncio.to_thread(self.receiver.start)
        await _wait_for(self._uplink_drained, deadline)

    def _journal_has_all_published(self) -> bool:
        assert self.hub is not None
        wanted = set(published_ids(self.publication_log))
        with self.hub.journal.reading() as conn:
            have = {row[0] for row in conn.execute("SELECT event_id FROM events")}
        return wanted <= have

    def _uplink_drained(self) -> bool:
        assert self.hub is not None
        if self.hub.uplink is None:
            return True
        return all(row["backlog"] == 0 for row in self.hub.uplink.status().values())

    def summary(self, devices_online: int) -> dict[str, Any]:
        assert self.hub is not None
        journal_path = self.hub.journal.path
        from hub.alerts import alert_counts

        with self.hub.journal.reading() as conn:
            alerts = alert_counts(conn)
        report = reconcile(
            published_ids(self.publication_log),
            stored_ids(journal_path, "SELECT event_id FROM events"),
            stored_ids(
                self.receiver.db_path, "SELECT event_id FROM events WHERE hub_id = ?", HUB_ID
            ),
        )
        return {
            "hub_id": HUB_ID,
            "state_dir": str(self.state_dir),
            "reconciliation": report,
            "devices": {"known": len(self.hub.registry), "online": devices_online},
            "alerts": alerts,
            "alarm_presses": self.alarm_presses,
            "tickets": self._ticket_reckoning(),
            "city_outages": self.city_outages,
        }

    def _ticket_reckoning(self) -> dict[str, int]:
        """Numbers the hub allocated against what the printers printed or waited on."""
        assert self.hall is not None and self.hub is not None
        with self.hub.journal.reading() as conn:
            found = reckon(list(self.hall.printers.values()), conn)
        return {
            "allocated": found.allocated,
            "printed": found.printed,
            "please_wait": found.waited,
            "printed_twice": len(found.printed_twice),
            "unaccounted": len(found.unaccounted),
        }

    async def stop(self) -> None:
        """Stop whatever was started, in reverse order; safe after a failed start."""
        steps: list[tuple[str, Any]] = [
            ("simulated hall", self.hall.stop if self.hall is not None else None),
            ("hub", self.hub.stop if self.hub is not None else None),
            ("city receiver", self.receiver.stop),
            ("broker", self.broker.stop),
            ("folder lock", self.lock.release),
        ]
        for name, step in steps:
            if step is None:
                continue
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("demo: stopping the %s failed", name)


async def _wait_for(condition: Any, deadline: float) -> None:
    while not condition():
        if time.monotonic() > deadline:
            logger.warning("demo: still settling at the deadline; reporting what there is")
            return
        await asyncio.sleep(0.25)


async def _sleep_until(monotonic_deadline: float) -> None:
    await asyncio.sleep(max(0.0, monotonic_deadline - time.monotonic()))


async def run_demo(duration: float | None, state_dir: Path, console_port: int) -> int:
    """Run the demo hall; with `duration`, print the JSON summary and return 0 if it's clean."""
    demo = Demo(state_dir, console_port, DemoPlan())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    try:
        hub = await demo.start()
    except BaseException:
        await demo.stop()
        raise
    _print_banner(hub, state_dir, duration)
    assert demo.hall is not None
    hall_task = asyncio.create_task(demo.hall.run(), name="demo-simulated-hall")
    script_task = asyncio.create_task(demo.script(), name="demo-script")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration)

    devices_online = hub.registry.online_count()
    script_task.cancel()
    await demo.hall.stop()
    hall_task.cancel()
    await demo.settle()
    summary = demo.summary(devices_online) if duration is not None else None
    await demo.stop()
    if summary is None:
        return 0
    sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return 0 if summary["reconciliation"]["ok"] else 1


def _print_banner(hub: HubService, state_dir: Path, duration: float | None) -> None:
    lines = [
        "hallhub demo hall is running.",
        f"  console:   {hub.console_url}login   (user admin, password shown above)",
        f"  overview:  {hub.console_url}?token={hub.token}",
        f"  API token: {hub.token}   (send as 'Authorization: Bearer <token>')",
        f"  files:     {state_dir}",
        "  Ctrl-C stops it." if duration is None else f"  stopping by itself in {duration:g} s.",
    ]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
