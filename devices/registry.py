"""The device registry: every device of the hall, its model, and its live health.

The registry is built from the hall configuration, the device models and the
commissioning records (devices/commissioning.py). A device is ``commissioned``
(its messages are taken in) or ``retired`` (its messages are refused and kept);
a device nobody has commissioned yet is ``pending`` and lives outside the registry
until hall IT commissions it. Live state (online, last seen, last values) changes
only on the event loop, from events the journal has already committed, so what the
console shows is always backed by the journal.
"""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from devices.profiles import DeviceModel
from hub.config import DeviceSpec
from hub.errors import ConfigError
from hub.events import Event

logger = logging.getLogger(__name__)

HUB_SOURCE = "hub"


class DeviceLifecycle(enum.StrEnum):
    """Where a device stands with hall IT."""

    PENDING = "pending"
    COMMISSIONED = "commissioned"
    RETIRED = "retired"


@dataclass(slots=True)
class DeviceState:
    """One device and what the hub currently knows of it."""

    spec: DeviceSpec
    model: DeviceModel
    lifecycle: DeviceLifecycle = DeviceLifecycle.COMMISSIONED
    online: bool = False
    reason: str = "not seen since the hub started"
    last_seen: float | None = None
    last_seen_monotonic: float | None = None
    last_values: dict[str, Any] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        return self.spec.id

    @property
    def kind(self) -> str:
        return self.model.kind

    def heartbeat_timeout(self) -> float | None:
        return self.model.mqtt.heartbeat_timeout if self.model.mqtt else None

    def drift(self) -> list[dict[str, Any]]:
        """Where the device's reported firmware or settings differ from its model's."""
        expected: dict[str, Any] = dict(self.model.settings)
        if self.model.firmware:
            expected["firmware"] = self.model.firmware
        return [
            {"field": name, "expected": value, "reported": self.last_values[name]}
            for name, value in expected.items()
            if name in self.last_values and self.last_values[name] != value
        ]

    def address(self) -> str:
        """Where the hub reaches the device: its MQTT client id or its Modbus address."""
        modbus = self.spec.modbus
        if modbus is None:
            return f"mqtt:{self.device_id}"
        return f"modbus:{modbus.host}:{modbus.port}/{modbus.unit_id}"

    def to_json(self) -> dict[str, Any]:
        drift = self.drift()
        return {
            "device_id": self.device_id,
            "state": self.lifecycle.value,
            "kind": self.kind,
            "model": self.model.model,
            "protocol": self.model.protocol,
            "address": self.address(),
            "zone": self.spec.zone,
            "floor": self.spec.floor,
            "window": self.spec.window,
            "firmware": self.last_values.get("firmware"),
            "expected_firmware": self.model.firmware or None,
            "drifted": bool(drift),
            "drift": drift,
            "online": self.online,
            "reason": self.reason,
            "last_seen": self.last_seen,
            "battery": self.last_values.get("battery"),
            "paper": self.last_values.get("paper"),
            "last_values": self.last_values,
        }


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A device went online or offline, and why."""

    device_id: str
    online: bool
    reason: str


class Registry:
    """Looks devices up by id and keeps their health."""

    def __init__(self, specs: list[DeviceSpec], models: dict[str, DeviceModel]) -> None:
        unknown = [
            f"device {s.id}: unknown model {s.model!r}" for s in specs if s.model not in models
        ]
        if unknown:
            raise ConfigError("devices", unknown)
        self.models = models
        self._devices = {spec.id: DeviceState(spec, models[spec.model]) for spec in specs}

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, device_id: str) -> DeviceState | None:
        """The device with this id, or None if the hall has none."""
        return self._devices.get(device_id)

    def all(self) -> list[DeviceState]:
        return list(self._devices.values())

    def online_count(self) -> int:
        return sum(1 for device in self._devices.values() if device.online)

    def commission(self, spec: DeviceSpec) -> DeviceState:
        """Take the device in (again), at the place and with the model `spec` gives."""
        model = self.models.get(spec.model)
        if model is None:
            raise ConfigError("devices", [f"device {spec.id}: unknown model {spec.model!r}"])
        device = self._devices.get(spec.id)
        if device is None or device.model.model != spec.model:
            device = DeviceState(spec, model)
            self._devices[spec.id] = device
        device.spec = spec
        device.lifecycle = DeviceLifecycle.COMMISSIONED
        return device

    def retire(self, device_id: str) -> DeviceState | None:
        """Stop taking the device's messages; it stays listed as retired."""
        device = self._devices.get(device_id)
        if device is not None:
            device.lifecycle = DeviceLifecycle.RETIRED
            device.online = False
            device.reason = "retired by hall IT"
        return device

    def observe(self, event: Event, now_monotonic: float) -> HealthChange | None:
        """Update a device from a committed event; report if it came online or left."""
        device = self._devices.get(event.device_id)
        if device is None or event.data.get("source") == HUB_SOURCE:
            return None

        device.last_seen = event.received_at
        device.last_seen_monotonic = now_monotonic
        if event.type not in ("status", "heartbeat"):
            device.last_values.update(event.data)
        elif event.type == "status":
            device.last_values.update({k: v for k, v in event.data.items() if k != "online"})

        if event.type == "status" and event.data.get("online") is False:
            return self._set_online(device, False, "device reported offline (last will)")
        return self._set_online(device, True, "messages arriving")

    def set_health(self, device_id: str, online: bool, reason: str) -> HealthChange | None:
        """Record a health verdict made elsewhere (a Modbus poller)."""
        device = self._devices.get(device_id)
        return None if device is None else self._set_online(device, online, reason)

    def expire(self, now_monotonic: float) -> list[HealthChange]:
        """Mark offline every MQTT device silent for longer than its heartbeat timeout."""
        changes = []
        for device in self._devices.values():
            timeout = device.heartbeat_timeout()
            seen = device.last_seen_monotonic
            retired = device.lifecycle is DeviceLifecycle.RETIRED
            if retired or not device.online or timeout is None or seen is None:
                continue
            if now_monotonic - seen > timeout:
                reason = f"nothing heard for {timeout:g} s"
                change = self._set_online(device, False, reason)
                if change is not None:
                    changes.append(change)
        return changes

    def restore(self, conn: sqlite3.Connection) -> None:
        """Fill last-seen times and the last reported status from the journal."""
        rows = conn.execute(
            "SELECT device_id, MAX(received_at) FROM events GROUP BY device_id"
        ).fetchall()
        for device_id, last_seen in rows:
            device = self._devices.get(device_id)
            if device is not None:
                device.last_seen = last_seen
                device.reason = "not heard since the hub restarted"
        statuses = conn.execute(
            "SELECT device_id, data FROM events WHERE seq IN"
            " (SELECT MAX(seq) FROM events WHERE lane = 'health' AND type = 'status'"
            " GROUP BY device_id) AND lane = 'health'"
        ).fetchall()
        for device_id, data in statuses:
            device = self._devices.get(device_id)
            if device is not None:
                reported = json.loads(data)
                device.last_values.update({k: v for k, v in reported.items() if k != "online"})

    @staticmethod
    def _set_online(device: DeviceState, online: bool, reason: str) -> HealthChange | None:
        if device.online == online:
            if not online:
                device.reason = reason
            return None
        device.online = online
        device.reason = reason
        logger.info("device %s is %s: %s", device.device_id, _state(online), reason)
        return HealthChange(device.device_id, online, reason)


def _state(online: bool) -> str:
    return "online" if online else "offline"
