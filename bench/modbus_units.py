"""Modbus polling with a dead unit: 50 Modbus TCP units at 1 Hz, one never answers.

Target: the 49 healthy units keep at least 95 % of the poll rate they reach in the
same run with all 50 answering. Each unit is its own TCP device on loopback (a
`FaultySlave`); the dead one accepts the connection and stays silent, so every
poll of it runs into its timeout.

The same is measured for units sharing one RS-485 line (a socat pty pair, 19,200
baud, `--line-units` units, one silent, 0.3 s timeout), where the silent unit's
timeouts take line time from its neighbours.

    python -m bench.modbus_units [--units 50] [--line-units 10] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path

from bench.report import Row, emit
from devices.modbus_line import LineSettings, ModbusLine, ModbusLines
from devices.modbus_poller import ModbusPoller, Reading
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.simulators.modbus_faults import FaultySlave, unit_for
from hub.clock import SystemClock
from tests.serial_lines import pty_pair

TARGET = 0.95
# A unit on RS-485 at 19,200 baud answers within tens of milliseconds; a serial model
# waits 0.3 s. A 1 s timeout on a 1 Hz line would hand a silent unit the whole line.
LINE_TIMEOUT = 0.3


def one_hertz_counter(timeout: float = 1.0) -> DeviceModel:
    shipped = load_models(shipped_models_dir())["people-counter-pc4-modbus"]
    data = shipped.model_dump(mode="json")
    data["modbus"].update(poll_interval=1.0, timeout=timeout, retries=2)
    return DeviceModel.model_validate(data)


async def healthy_rate(units: int, seconds: float, *, dead: bool) -> float:
    """Readings per second per healthy TCP unit over `seconds` of polling."""
    model = one_hertz_counter()
    slaves = [
        FaultySlave([unit_for(model, 1, "silent" if dead and n == 0 else "none")])
        for n in range(units)
    ]
    ports = [await slave.serve_tcp() for slave in slaves]
    lines = ModbusLines()
    placed = [(lines.line_for(LineSettings(host="127.0.0.1", port=port)), 1) for port in ports]
    rate = await polled_rate(placed, model, seconds, dead=dead)
    lines.close()
    for slave in slaves:
        await slave.stop()
    return rate


async def line_rate(units: int, seconds: float, *, dead: bool, folder: Path) -> float:
    """Readings per second per healthy unit, all units on one RS-485 line."""
    model = one_hertz_counter(LINE_TIMEOUT)
    unit_ids = range(1, units + 1)
    slave = FaultySlave(
        [unit_for(model, n, "silent" if dead and n == 1 else "none") for n in unit_ids]
    )
    with pty_pair(folder) as (hub_end, device_end):
        slave.serve_serial(device_end, baudrate=19_200)
        line = ModbusLines().line_for(LineSettings(serial_port=hub_end, baudrate=19_200))
        rate = await polled_rate([(line, n) for n in unit_ids], model, seconds, dead=dead)
        line.close()
        await slave.stop()
    return rate


async def polled_rate(
    placed: list[tuple[ModbusLine, int]], model: DeviceModel, seconds: float, *, dead: bool
) -> float:
    """Poll each (line, unit id) for `seconds`; readings per second per healthy unit."""
    readings = [0] * len(placed)

    async def count(reading: Reading) -> None:
        readings[int(reading.device_id.removeprefix("unit-"))] += 1

    async def ignore(device_id: str, online: bool, reason: str) -> None:
        return None

    clock = SystemClock("assume")
    pollers = [
        ModbusPoller(f"unit-{n}", line, unit_id, model, clock, count, ignore)
        for n, (line, unit_id) in enumerate(placed)
    ]
    tasks = [asyncio.create_task(poller.run(), name=poller.device_id) for poller in pollers]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    healthy = readings[1:] if dead else readings
    return sum(healthy) / len(healthy) / seconds


async def measure(units: int, line_units: int, seconds: float) -> list[Row]:
    baseline = await healthy_rate(units, seconds, dead=False)
    with_dead = await healthy_rate(units, seconds, dead=True)
    ratio = with_dead / baseline
    print(f"TCP unit rate: {baseline:.3f}/s all answering, {with_dead:.3f}/s with one dead")
    with tempfile.TemporaryDirectory() as folder:
        line_baseline = await line_rate(line_units, seconds, dead=False, folder=Path(folder))
        line_dead = await line_rate(line_units, seconds, dead=True, folder=Path(folder))
    line_ratio = line_dead / line_baseline
    print(f"RS-485 unit rate: {line_baseline:.3f}/s all answering, {line_dead:.3f}/s one silent")
    return [
        Row(
            "modbus_units",
            f"RS-485 line: healthy rate with one silent of {line_units}",
            line_ratio,
            "x all answering",
            f">= {TARGET}",
            line_ratio >= TARGET,
        ),
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
    parser.add_argument("--line-units", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="a short run (hallhub bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 5.0)
    logging.basicConfig(level=logging.CRITICAL)
    emit(asyncio.run(measure(args.units, args.line_units, args.seconds)))


if __name__ == "__main__":
    main()
