"""Fault switches for simulated MQTT devices, as real hall devices misbehave.

* ``silent`` — the device stops publishing, heartbeats included, but keeps its
  connection: no last will fires, so only the heartbeat timeout can notice;
* ``garbage`` — it sends payloads no model accepts (bad UTF-8, broken JSON, wrong
  types, oversize);
* ``flap`` — its TCP link breaks without a DISCONNECT: the broker publishes its
  last will, and the device reconnects a second later;
* ``reboot`` — it restarts: a new boot id, counters back to zero (ticket numbers,
  people totals, the alarm latch), and a fresh connection.

``hallhub simulate --fault KIND:DEVICE_ID`` switches one on; every fault but
``silent`` strikes again every ``--fault-every`` seconds. Modbus faults live in
devices/simulators/modbus_faults.py.
"""

from __future__ import annotations

import argparse
import enum
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devices.errors import SimulatorError
from devices.simulators.mqtt_device import SimulatedMqttDevice
from hub.clock import Clock

logger = logging.getLogger(__name__)

DEFAULT_EVERY = 30.0
# What a device with broken firmware or a corrupted buffer might send.
GARBAGE_PAYLOADS = (
    b"\xff\xfe\xfd",
    b'{"msg_id": "x-1", "online": tru',
    b'{"msg_id": "x-2", "battery": "full"}',
    b"[1, 2, 3]",
    b'{"pad": "' + b"x" * 8_000 + b'"}',
)


class MqttFault(enum.StrEnum):
    """A way an MQTT device misbehaves."""

    SILENT = "silent"
    GARBAGE = "garbage"
    FLAP = "flap"
    REBOOT = "reboot"


@dataclass(frozen=True, slots=True)
class FaultSwitch:
    """One fault switched on for one device."""

    fault: MqttFault
    device_id: str

    @classmethod
    def parse(cls, text: str) -> FaultSwitch:
        """``KIND:DEVICE_ID``, e.g. ``flap:printer-1f-01``."""
        kind, _, device_id = text.partition(":")
        kinds = ", ".join(fault.value for fault in MqttFault)
        if kind not in set(MqttFault) or not device_id:
            raise SimulatorError(
                device_id, f"fault {text!r}: expected KIND:DEVICE_ID, KIND in {kinds}"
            )
        return cls(MqttFault(kind), device_id)


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """The fault switches of ``hallhub simulate``."""
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:DEVICE_ID",
        help="switch a fault on for an MQTT device: silent, garbage, flap or reboot (repeatable)",
    )
    parser.add_argument(
        "--fault-every",
        type=float,
        default=DEFAULT_EVERY,
        metavar="SECONDS",
        help="how often garbage, flap and reboot strike again (default 30)",
    )


def strike(device: SimulatedMqttDevice, fault: MqttFault) -> None:
    """Make `device` misbehave once as `fault` says."""
    logger.info("simulated fault %s on %s", fault.value, device.device_id)
    if fault is MqttFault.SILENT:
        device.silent = True
    elif fault is MqttFault.GARBAGE:
        for payload in GARBAGE_PAYLOADS:
            device.publish_raw("heartbeat", payload)
    elif fault is MqttFault.FLAP:
        device.drop_connection()
    else:
        device.reset_counters()
        device.drop_connection()


def run_faults(
    devices: Mapping[str, SimulatedMqttDevice],
    switches: Sequence[FaultSwitch],
    clock: Clock,
    every: float = DEFAULT_EVERY,
) -> Coroutine[Any, Any, None]:
    """Check the switches now; the returned coroutine strikes each fault at once, then
    every `every` seconds, until cancelled."""
    unknown = sorted({s.device_id for s in switches} - set(devices))
    if unknown:
        raise SimulatorError(unknown[0], f"no simulated MQTT device; known: {sorted(devices)}")
    if every <= 0:
        raise SimulatorError("", f"--fault-every must be positive, not {every}")
    return _strike_repeatedly(devices, switches, clock, every)


async def _strike_repeatedly(
    devices: Mapping[str, SimulatedMqttDevice],
    switches: Sequence[FaultSwitch],
    clock: Clock,
    every: float,
) -> None:
    while True:
        for switch in switches:
            device = devices[switch.device_id]
            if switch.fault is not MqttFault.SILENT or not device.silent:
                strike(device, switch.fault)
        await clock.sleep(every)
