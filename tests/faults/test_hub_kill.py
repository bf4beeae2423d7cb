"""kill -9 of the hub, again and again, while a whole hall publishes at QoS 1.

Extends tests/test_crash_end_to_end.py (four rating pads) to every lane the city
must get exactly once and to telemetry: 40 devices of four kinds publish from
their own connection while the hub process is killed five times, and the city
receiver drops some acknowledgements after storing. Every acknowledged message is
counted: in the journal once, at the city once, each lane contiguous from 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from hub.broker import ManagedBroker
from tests.conftest import free_port
from tests.faults.kit import HallPublisher, hall_devices, lane_seqs, stored_ids
from tests.test_crash_end_to_end import (
    spawned,  # noqa: F401  (the fixture that stops what a test started)
    start_hub,
    start_receiver,
    wait_until_hub_subscribed,
    write_hub_config,
)

# HALLHUB_SOAK=1 (make soak) kills it 40 times; CI runs the short version.
KILLS = 40 if os.environ.get("HALLHUB_SOAK") else 5
DEVICES = [{"id": "pad-1", "model": "rating-pad-rp5", "window": "W1"}, *hall_devices(10)]


def keep_publishing(publisher: HallPublisher, stop: threading.Event) -> None:
    while not stop.is_set():
        publisher.publish_round()
        time.sleep(0.05)


def test_repeated_kill_9_during_ingest_of_a_whole_hall_loses_and_doubles_nothing(
    fresh_broker: ManagedBroker,
    tmp_path: Path,
    spawned: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    """Five kill -9s (40 in a soak) while 40 devices publish: every acknowledged rating,
    alarm, ticket and reading is journaled once and at the city once, lanes without gaps."""
    receiver_port = free_port()
    config = write_hub_config(tmp_path, fresh_broker, receiver_port, DEVICES)
    spawned.append(start_receiver(tmp_path, receiver_port))
    spawned.append(start_hub(tmp_path, config))
    journal = tmp_path / "hub" / "journal.sqlite3"
    probe = wait_until_hub_subscribed(fresh_broker.port, journal)

    publisher = HallPublisher(fresh_broker.port, "crashhall", DEVICES[1:])
    stop = threading.Event()
    feeder = threading.Thread(target=keep_publishing, args=(publisher, stop))
    feeder.start()
    try:
        for _ in range(KILLS):
            time.sleep(1.2)
            spawned[-1].send_signal(signal.SIGKILL)
            spawned[-1].wait()
            spawned.append(start_hub(tmp_path, config))
    finally:
        stop.set()
        feeder.join()
    publisher.wait_acknowledged()
    publisher.close()

    wanted = publisher.event_ids() | {probe}
    city = tmp_path / "city.sqlite3"
    deadline = time.monotonic() + 120
    while not wanted <= set(stored_ids(city)) and time.monotonic() < deadline:
        time.sleep(0.5)

    in_journal, at_city = stored_ids(journal), stored_ids(city)
    assert len(wanted) > 1000, "too little was published to mean anything"
    assert wanted <= set(in_journal), "the journal lost messages the broker acknowledged"
    assert wanted <= set(at_city), "the city lacks journaled events"
    assert max(in_journal.values()) == 1 and max(at_city.values()) == 1, "an event twice"
    for lane in ("rating", "alarm", "ticket", "telemetry"):
        seqs = lane_seqs(city, lane)
        assert seqs == list(range(1, len(seqs) + 1)), f"{lane} lane has gaps at the city"
