"""`hallhub simulate --modbus-fault`: each fault as a hub's poller meets it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from devices.modbus_frames import read_request
from devices.modbus_line import LineSettings, ModbusLine
from devices.modbus_poller import ModbusPoller, PollCounters
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.simulators.modbus_fault_switch import FaultSwitch
from hub.broker import ManagedBroker
from tests.test_modbus_poller import InstantClock, Recorder

shipped = load_models(shipped_models_dir())["people-counter-pc4-modbus"]
document = shipped.model_dump(mode="json")
document["modbus"].update(timeout=0.5, retries=0)
COUNTER = DeviceModel.model_validate(document)


async def switched(fault: str) -> FaultSwitch:
    switch = FaultSwitch("pc-faulty", COUNTER, fault, InstantClock())
    await switch.start()
    return switch


@pytest.fixture
async def line() -> AsyncIterator[list[ModbusLine]]:
    made: list[ModbusLine] = []
    yield made
    for each in made:
        each.close()


def poller_for(switch: FaultSwitch, made: list[ModbusLine]) -> tuple[ModbusPoller, Recorder]:
    line = ModbusLine(LineSettings(host="127.0.0.1", port=switch.port))
    made.append(line)
    recorder = Recorder()
    polling = ModbusPoller(
        "pc-faulty", line, 1, COUNTER, InstantClock(), recorder.on_reading, recorder.on_health
    )
    return polling, recorder


def failures_by_kind(counters: PollCounters) -> dict[str, int]:
    kinds = ("timeouts", "exception_replies", "link_errors", "bad_replies")
    return {kind: getattr(counters, kind) for kind in kinds if getattr(counters, kind)}


@pytest.mark.parametrize(
    ("fault", "seen_as"),
    [
        ("silent", {"timeouts"}),
        ("garbage", {"bad_replies", "timeouts"}),
        ("busy", {"exception_replies"}),
        ("flap", {"link_errors"}),
        ("wrong-unit", {"bad_replies"}),
    ],
)
async def test_each_fault_fails_polls_while_on_and_the_unit_recovers_when_off(
    fault: str, seen_as: set[str], line: list[ModbusLine]
) -> None:
    """While the fault is on, polls make no reading and fail the way the fault should
    look to the hub; switched off, the next polls read the counter again."""
    switch = await switched(fault)
    polling, seen = poller_for(switch, line)
    try:
        switch.walk()
        switch.switch_on()
        for _ in range(2):
            await polling.poll_once()
        failures = failures_by_kind(polling.counters)
        switch.switch_off()
        await polling.poll_once()  # a dropped connection is reopened on this poll
        await polling.poll_once()
    finally:
        await switch.stop()

    assert failures and set(failures) <= seen_as
    assert polling.counters.readings >= 1 and polling.online is True
    assert seen.readings[-1].values["count_in"] == switch.unit.tables["input"][0]


async def test_reboot_resets_the_counters_and_the_hub_counts_on_from_zero(
    line: list[ModbusLine],
) -> None:
    """A reboot puts the totals back to zero; the poller takes it as a restart, so no
    delta is ever negative or a wrap-sized jump."""
    switch = await switched("reboot")
    polling, seen = poller_for(switch, line)
    try:
        for _ in range(5):
            switch.walk()
        await polling.poll_once()
        switch.switch_on()
        switch.walk()
        await polling.poll_once()
    finally:
        await switch.stop()

    before, after = seen.readings
    assert after.values["count_in"] <= 2 < 2 + int(before.values["count_in"])
    assert after.values["count_in_delta"] == after.values["count_in"]
    assert all(0 <= int(r.values["count_out_delta"]) <= 2 for r in seen.readings)


async def probe(port: int) -> int | None:
    """The exception code of one read of the counter's totals, if it refuses."""
    line = ModbusLine(LineSettings(host="127.0.0.1", port=port))
    try:
        reply = await line.request(1, read_request("input", 0, 2), 2.0)
    finally:
        line.close()
    return reply.exception_code


def test_simulate_runs_a_faulty_counter_a_hub_can_poll(
    tmp_path: Path, broker: ManagedBroker
) -> None:
    """`hallhub simulate --modbus-fault busy` lists pc-faulty in its devices section,
    and the unit at that address answers "slave device busy"."""
    command = [sys.executable, "-m", "hub.cli", "simulate", "--broker-port", str(broker.port)]
    command += ["--topic-root", "simfault", "--log", str(tmp_path / "published.jsonl")]
    command += ["--modbus-fault", "busy", "--modbus-fault-every", "60"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        lines = []
        for text in process.stdout:
            if text.startswith("# end of devices section"):
                break
            lines.append(text)
        devices = yaml.safe_load("".join(lines))["devices"]
        faulty = next(device for device in devices if device["id"] == "pc-faulty")
        exception_code = asyncio.run(probe(faulty["modbus"]["port"]))
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()

    assert faulty["model"] == "people-counter-pc4-modbus"
    assert exception_code == 6
