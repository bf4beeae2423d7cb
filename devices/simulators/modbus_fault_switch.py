"""`hallhub simulate --modbus-fault`: a Modbus people counter with a fault switched on.

The counter is a `FaultySlave` on loopback serving one unit of the people counter
model. People walk through its door; the chosen fault is switched on and off in
turn (on for `every` seconds, then off for as long), so a hub sees the unit fail
and recover:

    silent      stops answering
    garbage     answers with random bytes
    busy        answers "slave device busy" (exception 6)
    flap        drops the TCP connection on every other request
    wrong-unit  answers as another unit id
    reboot      restarts: its in and out totals go back to zero (at each switch-on)
"""

from __future__ import annotations

import logging
import random
from typing import Any

from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.simulators.modbus_faults import Fault, FaultySlave, FaultyUnit, unit_for
from hub.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

SWITCHES: dict[str, Fault] = {
    "silent": "silent",
    "garbage": "garbage",
    "busy": "busy",
    "flap": "flap",
    "wrong-unit": "wrong_unit",
    "reboot": "none",  # not a way of answering: an event, see `FaultSwitch.switch_on`
}
LOOPBACK = "127.0.0.1"


class FaultSwitch:
    """One faulty people counter and the schedule that switches its fault."""

    def __init__(
        self,
        device_id: str,
        model: DeviceModel,
        fault: str,
        clock: Clock,
        *,
        every: float = 10.0,
        port: int = 0,
        unit_id: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        if fault not in SWITCHES:
            raise ValueError(f"unknown Modbus fault {fault!r}; one of {', '.join(SWITCHES)}")
        self.device_id = device_id
        self.model = model
        self.fault = fault
        self.every = every
        self.unit: FaultyUnit = unit_for(model, unit_id)
        self.slave = FaultySlave([self.unit], rng=rng)
        self.port = port
        self.switched_on = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._count_in = 0
        self._count_out = 0

    async def start(self) -> None:
        """Listen on loopback (port 0: any free one)."""
        self.port = await self.slave.serve_tcp(LOOPBACK, self.port)
        logger.info(
            "faulty people counter %s on %s:%d, fault %s every %ss",
            self.device_id,
            LOOPBACK,
            self.port,
            self.fault,
            self.every,
        )

    async def stop(self) -> None:
        """Stop answering."""
        await self.slave.stop()

    def devices_entry(self) -> dict[str, Any]:
        """The unit's entry for the hall configuration's devices section."""
        return {
            "id": self.device_id,
            "model": self.model.model,
            "zone": "main-entrance",
            "floor": 1,
            "modbus": {"host": LOOPBACK, "port": self.port, "unit_id": self.unit.unit_id},
        }

    def switch_on(self) -> None:
        """Turn the fault on (a reboot happens once, now)."""
        self.switched_on += 1
        if self.fault == "reboot":
            self._count_in = self._count_out = 0
            self.unit.reboot()
            return
        self.unit.fault = SWITCHES[self.fault]
        logger.info("%s: fault %s on", self.device_id, self.fault)

    def switch_off(self) -> None:
        """Answer correctly again."""
        self.unit.fault = "none"
        logger.info("%s: fault %s off", self.device_id, self.fault)

    def walk(self) -> None:
        """A few people pass the door."""
        self._count_in += self._rng.choice((0, 1, 2))
        self._count_out = min(self._count_in, self._count_out + self._rng.choice((0, 1, 2)))
        self.unit.set_value("count_in", self._count_in)
        self.unit.set_value("count_out", self._count_out)
        self.unit.set_value("occupancy", self._count_in - self._count_out)

    async def run(self) -> None:
        """Walk people through and switch the fault on and off until cancelled."""
        while True:
            for switch in (self.switch_on, self.switch_off):
                switch()
                for _ in range(max(1, round(self.every))):
                    self.walk()
                    await self._clock.sleep(self.every / max(1, round(self.every)))


async def start_fault_switch(fault: str | None, every: float, port: int) -> FaultSwitch | None:
    """The faulty people counter `hallhub simulate --modbus-fault` asks for, started."""
    if fault is None:
        return None
    model = load_models(shipped_models_dir())["people-counter-pc4-modbus"]
    switch = FaultSwitch("pc-faulty", model, fault, SystemClock("assume"), every=every, port=port)
    await switch.start()
    return switch
