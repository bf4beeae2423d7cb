"""Commissioning: hall IT takes new devices in and retires old ones.

A device that publishes but is in neither the hall configuration nor the
commissioning records is *pending*: each of its messages is refused as
``unknown_device`` and kept, raw, in the dead-letter table (so nothing is lost and
the broker's in-flight window never fills). Pending devices are listed from there.
Commissioning gives the device a model and a place, records who did it in the
audit trail, and moves its kept messages into the journal, marked as replayed so
no edge-triggered rule fires on an old press. Retiring keeps the device listed,
refuses its messages from then on, and is recorded the same way.

The records live in the journal file, so a state survives restarts; a record
overrides the hall configuration (a configured device can be retired).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.errors import CommissioningError, UnknownDeviceError
from devices.payloads import RejectedMessage, decode_payload
from devices.registry import DeviceLifecycle, DeviceState, Registry
from hub.audit import AuditTrail
from hub.clock import Clock
from hub.config import DeviceSpec
from hub.errors import ConfigError
from hub.events import Observation, device_event_id, fallback_event_id
from hub.journal import Journal, connect

logger = logging.getLogger(__name__)

UNKNOWN_DEVICE = "unknown_device"
TABLE = """CREATE TABLE IF NOT EXISTS device_commissioning (
    device_id   TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    model       TEXT NOT NULL,
    zone        TEXT NOT NULL,
    floor       INTEGER,
    window      TEXT,
    changed_at  REAL NOT NULL,
    changed_by  TEXT NOT NULL
)"""


@dataclass(frozen=True, slots=True)
class Placement:
    """What hall IT says about a device when commissioning it."""

    model: str | None = None
    zone: str | None = None
    floor: int | None = None
    window: str | None = None


@dataclass(frozen=True, slots=True)
class PendingDevice:
    """A device heard on the broker that nobody has commissioned yet."""

    device_id: str
    first_seen: float
    last_seen: float
    messages: int
    message_names: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "state": DeviceLifecycle.PENDING.value,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "messages_kept": self.messages,
            "messages": list(self.message_names),
        }


class Commissioning:
    """Pending, commissioned and retired devices, kept in the journal file."""

    def __init__(
        self,
        registry: Registry,
        journal: Journal,
        audit: AuditTrail,
        clock: Clock,
        topic_root: str,
    ) -> None:
        self._registry = registry
        self._journal = journal
        self._audit = audit
        self._clock = clock
        self._prefix = f"mqtt:{topic_root}/"

    async def open(self) -> None:
        """Create the table and apply the saved records to the registry."""
        await self._journal.write(lambda conn: conn.execute(TABLE))
        with self._journal.reading() as conn:
            rows = conn.execute(
                "SELECT device_id, state, model, zone, floor, window FROM device_commissioning"
            ).fetchall()
        for device_id, state, model, zone, floor, window in rows:
            spec = DeviceSpec(id=device_id, model=model, zone=zone, floor=floor, window=window)
            try:
                self._registry.commission(spec)
            except ConfigError:
                logger.error("device %s: its model %s is no longer installed", device_id, model)
                continue
            if state == DeviceLifecycle.RETIRED:
                self._registry.retire(device_id)

    def pending(self) -> list[PendingDevice]:
        """Devices heard but not commissioned, from their kept messages."""
        found: dict[str, list[tuple[float, float, int, str]]] = {}
        with self._journal.reading() as conn:
            rows = conn.execute(
                "SELECT source, received_at, last_at, count FROM dead_letters"
                " WHERE reason = ? AND substr(source, 1, ?) = ?",
                (UNKNOWN_DEVICE, len(self._prefix), self._prefix),
            ).fetchall()
        for source, first, last, count in rows:
            device_id, _, message = source[len(self._prefix) :].partition("/")
            if self._registry.get(device_id) is None:
                found.setdefault(device_id, []).append((first, last, count, message))
        return [
            PendingDevice(
                device_id,
                min(row[0] for row in kept),
                max(row[1] for row in kept),
                sum(row[2] for row in kept),
                tuple(sorted({row[3] for row in kept})),
            )
            for device_id, kept in sorted(found.items())
        ]

    def find_pending(self, device_id: str) -> PendingDevice | None:
        return next((p for p in self.pending() if p.device_id == device_id), None)

    async def commission(self, device_id: str, placement: Placement, actor: str) -> DeviceState:
        """Take a pending (or retired) device in; replay what it sent while pending."""
        spec = self._spec_for(device_id, placement)
        try:
            device = self._registry.commission(spec)
        except ConfigError as exc:
            raise CommissioningError(device_id, f"unknown model {spec.model!r}") from exc

        await self._save(device, actor)
        replayed = await self._replay_kept(device)
        detail = {"model": spec.model, "zone": spec.zone, "replayed": replayed}
        await self._audit.record(actor, "device.commission", device_id, detail)
        logger.info("device %s commissioned as %s by %s", device_id, spec.model, actor)
        return device

    async def retire(self, device_id: str, actor: str) -> DeviceState:
        """Refuse the device's messages from now on; it stays listed as retired."""
        device = self._registry.retire(device_id)
        if device is None:
            raise UnknownDeviceError(device_id, "no such device to retire")

        await self._save(device, actor)
        await self._audit.record(actor, "device.retire", device_id, {"model": device.model.model})
        logger.info("device %s retired by %s", device_id, actor)
        return device

    # -- steps -------------------------------------------------------------------

    def _spec_for(self, device_id: str, placement: Placement) -> DeviceSpec:
        known = self._registry.get(device_id)
        if known is None and self.find_pending(device_id) is None:
            raise UnknownDeviceError(device_id, "never heard and not in the hall configuration")
        commissioned = known is not None and known.lifecycle is DeviceLifecycle.COMMISSIONED
        if commissioned and placement == Placement():
            raise CommissioningError(device_id, "already commissioned")
        model = placement.model or (known.model.model if known else None)
        if model is None:
            raise CommissioningError(device_id, "a pending device needs a model to commission")
        base = known.spec if known else DeviceSpec(id=device_id, model=model)
        return DeviceSpec(
            id=device_id,
            model=model,
            zone=placement.zone if placement.zone is not None else base.zone,
            floor=placement.floor if placement.floor is not None else base.floor,
            window=placement.window if placement.window is not None else base.window,
            modbus=base.modbus,
        )

    async def _save(self, device: DeviceState, actor: str) -> None:
        spec = device.spec
        row = (
            spec.id,
            device.lifecycle.value,
            spec.model,
            spec.zone,
            spec.floor,
            spec.window,
            self._clock.wall(),
            actor,
        )

        def save(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO device_commissioning (device_id, state, model, zone,"
                " floor, window, changed_at, changed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        await self._journal.write(save)

    async def _replay_kept(self, device: DeviceState) -> int:
        """Journal the messages kept while the device was pending; return how many."""
        source_prefix = f"{self._prefix}{device.device_id}/"
        with self._journal.reading() as conn:
            kept = conn.execute(
                "SELECT id, source, received_at, raw FROM dead_letters WHERE reason = ?"
                " AND substr(source, 1, ?) = ? AND size = length(raw) ORDER BY received_at",
                (UNKNOWN_DEVICE, len(source_prefix), source_prefix),
            ).fetchall()

        replayed = 0
        for row_id, source, received_at, raw in kept:
            observation = self._observation(device, source, received_at, bytes(raw))
            if observation is not None:
                await self._journal.append(observation)
                replayed += 1
            await self._journal.write(_forget_kept(row_id))
        return replayed

    def _observation(
        self, device: DeviceState, source: str, received_at: float, raw: bytes
    ) -> Observation | None:
        message_name = source.rsplit("/", 1)[-1]
        if device.model.mqtt is None:
            return None
        try:
            decoded = decode_payload(device.model, message_name, raw)
        except RejectedMessage as rejection:
            logger.warning(
                "kept %s of %s breaks its model: %s", message_name, device.device_id, rejection
            )
            return None
        topic = source.removeprefix("mqtt:")
        event_id = (
            device_event_id(device.device_id, decoded.message_id)
            if decoded.message_id is not None
            else fallback_event_id(device.device_id, topic, raw)
        )
        return Observation(
            event_id=event_id,
            lane=device.model.mqtt.messages[message_name].lane,
            device_id=device.device_id,
            kind=device.kind,
            type=message_name,
            data=decoded.fields,
            received_at=received_at,
            clock_synchronised=self._clock.is_synchronised(),
            device_time=decoded.device_time,
            # Replayed, not live: an old press must not fire an edge-triggered rule now.
            retained=True,
        )


def _forget_kept(row_id: int) -> Callable[[sqlite3.Connection], None]:
    """The write that drops one kept message once it is in the journal."""

    def forget(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM dead_letters WHERE id = ?", (row_id,))

    return forget


def commissioning_states(journal_path: Path) -> dict[str, str]:
    """Each device's state as hall IT last set it (``commissioned``, ``retired``).

    Read from a journal file beside a hub that may be running; a journal that does
    not exist yet, or has never had a device commissioned, gives none.
    """
    if not journal_path.exists():
        return {}
    conn = connect(journal_path, writer=False)
    try:
        rows = conn.execute("SELECT device_id, state FROM device_commissioning").fetchall()
    except sqlite3.OperationalError:
        return {}  # no such table: nothing was ever commissioned here
    finally:
        conn.close()
    return {str(device_id): str(state) for device_id, state in rows}
