"""The event envelope every part of hallhub speaks.

An event is one thing that happened in the hall: a ticket printed, a rating given,
a toilet call, an occupancy reading, a device going offline. Devices produce the
payload; the hub wraps it in an envelope that fixes its identity and its order:

* ``hub_id`` and ``epoch``: which journal it lives in. The epoch changes when a
  journal is restored from backup, so the city never confuses two histories.
* ``lane`` and ``seq``: the lane (alarm, rating, ticket, health, telemetry) and a
  sequence number within that lane that only grows. Order comes from ``seq``, never
  from wall time, because wall clocks jump.
* ``event_id``: stable for the same device message, so a redelivered message (the
  broker resends what the hub had not acknowledged) is recognised and kept once.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

# Fixed namespace for event ids; changing it would change every id ever issued.
EVENT_ID_NAMESPACE = uuid.UUID("6d1f0c5e-3c49-4b7e-9a55-6a1d0b3c2f10")


class Lane(enum.StrEnum):
    """Sync lanes, in the order the city receives them."""

    ALARM = "alarm"
    RATING = "rating"
    TICKET = "ticket"
    HEALTH = "health"
    TELEMETRY = "telemetry"


LANE_ORDER: tuple[Lane, ...] = tuple(Lane)


def device_event_id(device_id: str, message_id: str) -> str:
    """Event id for a device message that carries its own message id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"device\n{device_id}\n{message_id}"))


def fallback_event_id(device_id: str, topic: str, payload: bytes) -> str:
    """Event id for a device that sends no message id: a digest of the raw message.

    A redelivery carries the same bytes and so gets the same id. The cost: two
    byte-identical messages from one device count as one, which is why device models
    without a message id must put a timestamp or counter in the payload.
    """
    digest = hashlib.sha256(payload).hexdigest()
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"raw\n{device_id}\n{topic}\n{digest}"))


def hub_event_id() -> str:
    """Event id for something the hub itself observed (a poll, a health change)."""
    return str(uuid.uuid4())


@dataclass(slots=True)
class Observation:
    """An event before the journal has given it a sequence number."""

    event_id: str
    lane: Lane
    device_id: str
    kind: str
    type: str
    data: dict[str, Any]
    received_at: float
    clock_synchronised: bool
    device_time: float | None = None
    retained: bool = False


@dataclass(slots=True, frozen=True)
class Event:
    """A journaled event: an observation with its place in the journal."""

    hub_id: str
    epoch: int
    lane: Lane
    seq: int
    event_id: str
    device_id: str
    kind: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    received_at: float = 0.0
    clock_synchronised: bool = False
    device_time: float | None = None
    retained: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The JSON form sent to the city and shown by the API."""
        return {
            "hub_id": self.hub_id,
            "epoch": self.epoch,
            "lane": self.lane.value,
            "seq": self.seq,
            "event_id": self.event_id,
            "device_id": self.device_id,
            "kind": self.kind,
            "type": self.type,
            "data": self.data,
            "received_at": self.received_at,
            "clock_synchronised": self.clock_synchronised,
            "device_time": self.device_time,
            "retained": self.retained,
        }
