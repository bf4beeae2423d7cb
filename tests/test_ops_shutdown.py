"""Stopping the hub: SIGTERM under QoS 1 ingest, and a start that fails part-way.

The hub runs as `hallhub run`, a child process, with a unix datagram socket of the
test as its ``$NOTIFY_SOCKET``: it says READY=1 once started, feeds the watchdog,
says STOPPING=1 on SIGTERM and exits 0 only if it stopped within its configured
bound. Devices keep publishing at QoS 1 through the stop; after a restart every
message they published is in the journal exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from hub.broker import ManagedBroker
from hub.errors import JournalError
from hub.events import device_event_id
from hub.journal import Journal
from hub.ops.lifecycle import ShutdownTimeout, stop_within
from hub.service import HubService
from tests.hubkit import DeviceClient, hub_config
from tests.test_crash_end_to_end import journaled, read, spawned
from tests.test_ops_service import NotifyListener

__all__ = ["spawned"]

HUB_ID = "hall-term"
PADS = ["pad-1", "pad-2", "pad-3"]
SHUTDOWN_BOUND = 10


def write_config(tmp_path: Path, port: int, topic_root: str) -> Path:
    document = {
        "hub": {"id": HUB_ID, "state_dir": str(tmp_path / "hub"), "clock_sync": "assume"},
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_root": topic_root},
        "console": {"host": "127.0.0.1", "port": 0},
        "devices": [{"id": pad, "model": "rating-pad-rp5", "window": pad} for pad in PADS],
        "operations": {"shutdown_timeout": SHUTDOWN_BOUND},
    }
    path = tmp_path / "hallhub.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def start_hub(tmp_path: Path, config: Path, notify: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "NOTIFY_SOCKET": str(notify),
        "WATCHDOG_USEC": "400000",
    }
    env.pop("WATCHDOG_PID", None)
    with (tmp_path / "hub.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run", "--config", str(config)],
            stdout=log,
            stderr=log,
            env=env,
        )


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class Publisher:
    """Pads publishing ratings at QoS 1 until stopped; keeps the ids the broker PUBACKed."""

    def __init__(self, port: int, topic_root: str) -> None:
        self.published: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(port, topic_root, pad)) for pad in PADS
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, port: int, topic_root: str, pad: str) -> None:
        device = DeviceClient(port, f"{topic_root}-{pad}")
        try:
            while not self._stop.is_set():
                msg_id = device.publish(
                    f"{topic_root}/{pad}/rating", {"level": "满意", "window": "pad-1"}
                )
                self.published.append(device_event_id(pad, msg_id))
                time.sleep(0.005)
        finally:
            device.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def wait_until_subscribed(port: int, topic_root: str, journal: Path) -> str:
    """Publish probe ratings until the hub journals one; that probe's event id."""
    probe = DeviceClient(port, f"{topic_root}-probe")
    try:
        for _attempt in range(300):
            msg_id = probe.publish(
                f"{topic_root}/pad-1/rating", {"level": "满意", "window": "pad-1"}
            )
            event_id = device_event_id("pad-1", msg_id)
            time.sleep(0.1)
            if journaled(journal, event_id):
                return event_id
    finally:
        probe.close()
    raise AssertionError("the hub never subscribed")


def test_sigterm_under_ingest_stops_cleanly_within_the_bound_and_loses_nothing(
    broker: ManagedBroker,
    unique_topic_root: str,
    tmp_path: Path,
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    """SIGTERM mid-ingest: STOPPING=1, exit 0 (the hub's own bound held), a clean journal;
    after a restart every published message is journaled once, none twice."""
    config = write_config(tmp_path, broker.port, unique_topic_root)
    journal = tmp_path / "hub" / "journal.sqlite3"
    listener = NotifyListener(tmp_path / "notify")
    try:
        spawned.append(start_hub(tmp_path, config, listener.path))
        wait_for(lambda: "READY=1" in listener.messages())
        # Before the hub's first subscription there is no session to queue in.
        first = wait_until_subscribed(broker.port, unique_topic_root, journal)

        publisher = Publisher(broker.port, unique_topic_root)
        wait_for(lambda: len(publisher.published) >= 300)
        spawned[-1].send_signal(signal.SIGTERM)
        exit_code = spawned[-1].wait(timeout=SHUTDOWN_BOUND + 20)
        assert "STOPPING=1" in listener.messages()
        assert "WATCHDOG=1" in listener.messages()
        wait_for(lambda: len(publisher.published) >= 600)
        publisher.stop()

        assert exit_code == 0, (tmp_path / "hub.log").read_text()[-3000:]
        assert "hub stopped cleanly" in (tmp_path / "hub.log").read_text()
        assert not Path(f"{journal}-wal").exists(), "journal not closed cleanly"

        spawned.append(start_hub(tmp_path, config, listener.path))
        wanted = {first, *publisher.published}
        ratings = "SELECT event_id FROM events WHERE lane = 'rating'"
        wait_for(lambda: wanted <= {row[0] for row in read(journal, ratings)}, timeout=60)
        spawned[-1].send_signal(signal.SIGTERM)
        assert spawned[-1].wait(timeout=SHUTDOWN_BOUND + 20) == 0
    finally:
        listener.close()

    counted = Counter(row[0] for row in read(journal, ratings))
    assert {event_id: n for event_id, n in counted.items() if n > 1} == {}
    assert wanted <= set(counted)


async def test_start_failing_on_the_journal_raises_and_leaves_nothing_running(
    tmp_path: Path, broker: ManagedBroker, unique_topic_root: str
) -> None:
    """A JournalError inside the start (here: the journal belongs to another hub) makes
    start() raise it, not hang, and releases the state folder for the next attempt."""
    other = Journal(tmp_path / "journal.sqlite3", "hall-other")
    other.open()
    other.close()
    config = hub_config(tmp_path, broker.port, unique_topic_root, [])

    for _attempt in range(2):
        service = HubService(config)
        with pytest.raises(JournalError, match="belongs to hub 'hall-other'"):
            await service.start()


async def test_start_failing_after_the_journal_opened_raises(
    tmp_path: Path, broker: ManagedBroker, unique_topic_root: str
) -> None:
    """A JournalError from a part started after the journal (the audit trail here)
    propagates out of start(), and the journal it had opened is closed again."""
    service = HubService(hub_config(tmp_path, broker.port, unique_topic_root, []))

    async def refuse() -> None:
        raise JournalError("disk refused the audit table")

    service.audit.open = refuse  # type: ignore[method-assign]

    with pytest.raises(JournalError, match="disk refused"):
        await service.start()
    with pytest.raises(JournalError, match="closed"):
        await service.journal.write(lambda conn: None)


class _HangingStop:
    """Stands in for a hub whose stop hangs (a real one cannot be made to on demand)."""

    async def stop(self) -> None:
        await asyncio.sleep(3600)


async def test_a_stop_past_the_bound_is_reported_not_waited_for() -> None:
    """If stopping takes longer than the bound, the hub gives up and says so (exit 2)."""
    with pytest.raises(ShutdownTimeout, match=r"within 0\.2 s"):
        await stop_within(_HangingStop(), 0.2)  # type: ignore[arg-type]
