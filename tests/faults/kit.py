"""Helpers for the fault suite: a hall's worth of publishers, counts by event id, a
small filesystem of the test's own."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from hub.events import device_event_id

# One device of each kind that carries a lane the city must get exactly once.
MESSAGES: dict[str, tuple[str, dict[str, Any]]] = {
    "rating-pad-rp5": ("rating", {"level": "满意", "window": "W1"}),
    "toilet-alarm-ta1": ("call", {"source": "cord"}),
    "ticket-printer-tp80": ("ticket", {"ticket": "A001", "category": "A"}),
    "occupancy-sensor-os1": ("count", {"occupancy": 7}),
}


def hall_devices(per_model: int, models: tuple[str, ...] = tuple(MESSAGES)) -> list[dict[str, Any]]:
    """`per_model` devices of each model, as the hall configuration lists them."""
    return [
        {"id": f"{model.split('-')[0]}-{n}", "model": model, "zone": "f1", "window": f"W{n}"}
        for model in models
        for n in range(per_model)
    ]


class HallPublisher:
    """One MQTT connection publishing, at QoS 1, for many devices.

    It keeps every message it sent with paho's handle on it, so a test can count
    those the broker acknowledged with a PUBACK. paho reconnects by itself and
    resends what was in flight, so it keeps publishing across a broker restart.
    """

    def __init__(self, port: int, topic_root: str, devices: list[dict[str, Any]]) -> None:
        self.topic_root = topic_root
        self.devices = devices
        self._sent: list[tuple[mqtt.MQTTMessageInfo, str, str]] = []
        self._boot = secrets.token_hex(3)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"fault-publisher-{self._boot}",
            clean_session=False,
        )
        self.client.max_inflight_messages_set(50)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish_round(self) -> None:
        """One message from every device; none while the link is down (devices wait)."""
        for device in self.devices:
            if not self.client.is_connected():
                return
            message, fields = MESSAGES[device["model"]]
            msg_id = f"{self._boot}-{len(self._sent) + 1}"
            body = json.dumps({"msg_id": msg_id, "ts": time.time(), **fields})
            info = self.client.publish(f"{self.topic_root}/{device['id']}/{message}", body, 1)
            self._sent.append((info, device["id"], msg_id))

    def wait_acknowledged(self, timeout: float = 60) -> None:
        """Wait until the broker acknowledged everything published so far."""
        deadline = time.monotonic() + timeout
        for info, _device, _msg_id in self._sent:
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.01)
        unacknowledged = sum(1 for info, *_ in self._sent if not info.is_published())
        assert not unacknowledged, f"{unacknowledged} messages never acknowledged"

    def event_ids(self) -> set[str]:
        """Event ids of the messages the broker has acknowledged so far."""
        return {
            device_event_id(device, msg_id)
            for info, device, msg_id in list(self._sent)
            if info.is_published()
        }

    def sent_in_order(self) -> list[str]:
        """Event ids of every message sent so far, in the order they were published."""
        return [device_event_id(device, msg_id) for _info, device, msg_id in self._sent]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stored_ids(db: Path, where: str = "1") -> Counter[str]:
    """How often each event id is in the events table of `db` (journal or receiver)."""
    if not db.exists():
        return Counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return Counter(row[0] for row in conn.execute(f"SELECT event_id FROM events WHERE {where}"))
    except sqlite3.OperationalError:  # not created yet
        return Counter()
    finally:
        conn.close()


def lane_seqs(db: Path, lane: str) -> list[int]:
    """The sequence numbers of one lane in `db`, in order."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq FROM events WHERE lane = ? ORDER BY seq", (lane,))
        return [row[0] for row in rows]
    finally:
        conn.close()


@contextmanager
def small_filesystem(folder: Path, mebibytes: int) -> Iterator[Path]:
    """An ext4 filesystem of `mebibytes` on a loop device, mounted for the test (root)."""
    image = folder / "disk.img"
    mount_point = folder / "small-disk"
    mount_point.mkdir()
    with image.open("wb") as sparse:
        sparse.truncate(mebibytes * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        # A process of a failed test may still hold a file there: detach lazily then.
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)
