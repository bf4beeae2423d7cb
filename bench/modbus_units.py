"""Modbus polling with a dead unit: 50 Modbus TCP units at 1 Hz, one never answers.

Target: the 49 healthy units keep at least 95 % of the poll rate they reach in the
same run with all 50 answering. Each unit is its own TCP device on loopback (a
`FaultySlave`); the dead one accepts the connection and stays silent, so every
poll of it runs into its timeout.

    python -m bench.modbus_units [--units 50] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from bench.report import Row, emit
from devices.modbus_line import LineSettings, ModbusLines
from devices.modbus_poller import ModbusPoller, Reading
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.simulators.modbus_faults import FaultySlave, unit_for
from hub.clock import SystemClock

TARGET = 0.95


def one_hertz_counter() -> DeviceModel:
    shipped = load_models(shipped_models_dir())["people-counter-pc4-modbus"]
    data = shipped.model_dump(mode="json")
    data["modbus"].update(poll_interval=1.0, timeout=1.0, retries=2)
    return DeviceModel.model_validate(data)


async def healthy_rate(units: int, seconds: float, *, dead: bool) -> float:
    """Readings per second per healthy unit over `seconds` of polling."""
    model = one_hertz_counter()
    slaves = [
        FaultySlave([unit_for(model, 1, "silent" if dead and n == 0 else "none")])
        for n in range(units)
    ]
    ports = [await slave.serve_tcp() for slave in slaves]
    readings = [0] * units

    async def count(reading: Reading) -> None:
        readings[int(reading.device_id.removeprefix("unit-"))] += 1

    async def ignore(device_id: str, online: bool, reason: str) -> None:
        return None

    lines = ModbusLines()
    pollers = [
        ModbusPoller(
            f"unit-{n}",
            lines.line_for(LineSettings(host="127.0.0.1", port=port)),
            1,
            model,
            SystemClock("assume"),
            count,
            ignore,
        )
        for n, port in enumerate(ports)
    ]
    tasks = [asyncio.create_task(poller.run(), name=poller.device_id) for poller in pollers]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lines.close()
    for slave in slaves:
        await slave.stop()

    healthy = readings[1:] if dead else readings
    return sum(healthy) / len(healthy) / seconds


async def measure(units: int, seconds: float) -> list[Row]:
    baseline = await healthy_rate(units, seconds, dead=False)
    with_dead = await healthy_rate(units, seconds, dead=True)
    ratio = with_dead / baseline
    print(f"healthy unit rate: {baseline:.3f}/s all answering, {with_dead:.3f}/s with one dead")
    return [
        Row("modbus_units", "healthy unit poll rate, one dead", with_dead, "polls/s", "-", None),
        Row(
            "modbus_units",
            f"healthy rate with one dead of {units}",
            ratio,
            "x all answering",
            f">= {TARGET}",
            ratio >= TARGET,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    emit(asyncio.run(measure(args.units, args.seconds)))


if __name__ == "__main__":
    main()
