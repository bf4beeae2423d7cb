"""A simulated Modbus TCP people counter, served by pymodbus on loopback.

The register map comes from the device model (by default
``people-counter-pc4-modbus``), and the words are produced with
`devices.registers.encode_register`, so byte and word order follow the model just
as the hub will decode them. People walk in and out over time; any address the map
does not define answers with exception 2 (illegal data address), as a real counter
does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices.errors import SimulatorError
from devices.profiles import DeviceModel, Register
from devices.registers import RegisterValue, encode_register
from hub.clock import Clock

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Modbus function codes used to address each table when writing simulated values.
_WRITE_FUNCTION = {"holding": 3, "input": 4}


class _Stoppable(Protocol):
    """The typed face of pymodbus's server shutdown (pymodbus leaves it unannotated)."""

    async def shutdown(self) -> None: ...


class SimulatedPeopleCounter:
    """A door-frame people counter answering Modbus TCP on 127.0.0.1."""

    def __init__(
        self,
        device_id: str,
        model: DeviceModel,
        clock: Clock,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        unit_id: int = 1,
        speed: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        if model.modbus is None:
            raise SimulatorError(device_id, f"model {model.model} is not a Modbus model")
        self.device_id = device_id
        self.model = model
        self.host = host
        self.unit_id = unit_id
        self.count_in = 0
        self.count_out = 0
        self._requested_port = port
        self._clock = clock
        self._speed = speed
        self._rng = rng or random.Random()
        self._registers = {register.name: register for register in model.modbus.registers}
        self._server: ModbusTcpServer | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port the counter listens on (known once started)."""
        if self._port is None:
            raise SimulatorError(self.device_id, "the people counter has not been started")
        return self._port

    @property
    def occupancy(self) -> int:
        """People inside by the counter's reckoning."""
        return self.count_in - self.count_out

    async def start(self) -> None:
        """Listen on the host and port given (port 0: any free one)."""
        device = SimDevice(id=self.unit_id, simdata=self._register_blocks())
        server = ModbusTcpServer(device, address=(self.host, self._requested_port))
        await server.serve_forever(background=True)

        self._server = server
        self._port = _listening_port(server, self._requested_port)
        logger.info(
            "simulated people counter %s on %s:%d unit %d",
            self.device_id,
            self.host,
            self._port,
            self.unit_id,
        )

    async def stop(self) -> None:
        """Close the listener and every client connection."""
        if self._server is None:
            return
        server: _Stoppable = self._server
        self._server = None
        await server.shutdown()
        logger.info("simulated people counter %s stopped", self.device_id)

    async def run(self, interval: float = 2.0) -> None:
        """Let people through every `interval` seconds (divided by `speed`) until cancelled."""
        while True:
            await self._clock.sleep(interval / self._speed)
            await self.walk()

    async def walk(self) -> None:
        """A few people pass the door; the registers follow."""
        arrivals = self._rng.choice((0, 0, 1, 1, 2, 3))
        leavers = min(self._rng.choice((0, 0, 1, 1, 2, 3)), self.occupancy + arrivals)
        await self.set_counts(self.count_in + arrivals, self.count_out + leavers)

    async def set_counts(self, count_in: int, count_out: int) -> None:
        """Set the in and out totals (and so the occupancy) the counter reports."""
        self.count_in, self.count_out = count_in, count_out
        await self._write("count_in", count_in)
        await self._write("count_out", count_out)
        await self._write("occupancy", max(-32768, min(32767, count_in - count_out)))

    async def _write(self, name: str, value: RegisterValue) -> None:
        register = self._registers.get(name)
        if register is None or self._server is None:
            return
        words = encode_register(register, value, device_id=self.device_id)
        function = _WRITE_FUNCTION[register.table]
        await self._server.async_setValues(self.unit_id, function, register.address, words)

    def _register_blocks(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        holding: list[SimData] = []
        inputs: list[SimData] = []
        for register in self._registers.values():
            if register.table not in _WRITE_FUNCTION:
                raise SimulatorError(
                    self.device_id, f"register {register.name}: only register tables simulated"
                )
            words = encode_register(register, self._initial(register), device_id=self.device_id)
            block = SimData(register.address, values=words, datatype=DataType.REGISTERS)
            (holding if register.table == "holding" else inputs).append(block)
        # pymodbus needs all four tables; the counter has no coils or discrete inputs,
        # so each gets one idle bank of 16 bits that reads false.
        return (_idle_bits(), _idle_bits(), holding or _idle_words(), inputs or _idle_words())

    def _initial(self, register: Register) -> RegisterValue:
        if register.name == "firmware_version":
            major, _, minor = self.model.firmware.partition(".")
            if major.isdigit() and minor.isdigit():
                return int(major) << 8 | int(minor)
        if register.type == "string":
            return self.model.firmware or "0"
        return 0


def _idle_bits() -> list[SimData]:
    return [SimData(0, values=[False] * 16, datatype=DataType.BITS)]


def _idle_words() -> list[SimData]:
    return [SimData(65535, values=0, datatype=DataType.REGISTERS)]


def _listening_port(server: ModbusTcpServer, requested: int) -> int:
    listener = server.transport
    if isinstance(listener, asyncio.Server) and listener.sockets:
        port: int = listener.sockets[0].getsockname()[1]
        return port
    if requested:
        return requested
    raise SimulatorError("", "pymodbus did not report the port it listens on")
