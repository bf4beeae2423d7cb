"""The Modbus poller against real pymodbus servers on loopback.

Time is fake: `InstantClock` returns from every sleep at once and remembers how long
it was asked to wait, so backoff is checked without waiting for it. The network is
real: a pymodbus server (the simulated people counter), a closed port, and a socket
that accepts connections but never answers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from devices.modbus_line import LineSettings, ModbusLine
from devices.modbus_poller import ModbusPoller, Reading
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.simulators.modbus_occupancy import SimulatedPeopleCounter

LOOPBACK = "127.0.0.1"
UNIT_ID = 7


class InstantClock:
    """A Clock whose sleeps end at once, moving its time forward by the amount asked."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.sleeps: list[float] = []

    def wall(self) -> float:
        return 1_767_225_600.0 + self.now

    def monotonic(self) -> float:
        return self.now

    def is_synchronised(self) -> bool:
        return True

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0.001)  # let the test's own tasks run


class Recorder:
    """Collects what the poller reports."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.health: list[tuple[str, bool, str]] = []

    async def on_reading(self, reading: Reading) -> None:
        self.readings.append(reading)

    async def on_health(self, device_id: str, online: bool, reason: str) -> None:
        self.health.append((device_id, online, reason))


OPEN_LINES: list[ModbusLine] = []


def tcp_line(port: int) -> ModbusLine:
    line = ModbusLine(LineSettings(host=LOOPBACK, port=port))
    OPEN_LINES.append(line)
    return line


@pytest.fixture(autouse=True)
async def close_lines() -> AsyncIterator[None]:
    """Every line a test opened is closed at its end, as the hub closes its own."""
    yield
    while OPEN_LINES:
        OPEN_LINES.pop().close()
    await asyncio.sleep(0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def has_readings(recorder: Recorder, count: int) -> bool:
    return len(recorder.readings) >= count


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def counter_model(**modbus_changes: Any) -> DeviceModel:
    """The shipped people counter model, with changes to its modbus section."""
    shipped = load_models(shipped_models_dir())["people-counter-pc4-modbus"]
    data = shipped.model_dump(mode="json")
    data["modbus"].update(modbus_changes)
    return DeviceModel.model_validate(data)


@pytest.fixture
async def counter() -> AsyncIterator[SimulatedPeopleCounter]:
    model = counter_model()
    simulated = SimulatedPeopleCounter("pc-test", model, InstantClock(), unit_id=UNIT_ID)
    await simulated.start()
    yield simulated
    await simulated.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never sends a byte back."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


async def run_poller(poller: ModbusPoller) -> asyncio.Task[None]:
    return asyncio.create_task(poller.run(), name=f"poll-{poller.device_id}")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_readings_carry_the_decoded_values(counter: SimulatedPeopleCounter) -> None:
    """Totals above 65535 (low word first), signed occupancy and firmware decode exactly,
    and health is reported once, not on every poll."""
    await counter.set_counts(70_000, 70_012)  # occupancy -12: a missed entry
    recorder, clock = Recorder(), InstantClock()
    poller = ModbusPoller(
        "pc-test",
        tcp_line(counter.port),
        UNIT_ID,
        counter.model,
        clock,
        recorder.on_reading,
        recorder.on_health,
    )

    task = await run_poller(poller)
    await wait_until(lambda: len(recorder.readings) >= 3)
    await stop(task)

    reading = recorder.readings[0]
    assert reading.device_id == "pc-test" and reading.message == "count"
    assert reading.values == {
        "count_in": 70_000,
        "count_out": 70_012,
        "occupancy": -12,
        "sensor_status": 0,
        "firmware_version": 0x0402,
        "count_in_delta": 0,  # the first reading only learns where the totals stand
        "count_out_delta": 0,
        "people_inside": 0,
    }
    assert recorder.health == [("pc-test", True, "answering polls")]
    assert clock.sleeps[:2] == [2.0, 2.0]  # the model's poll interval


async def test_readings_follow_the_counter(counter: SimulatedPeopleCounter) -> None:
    """A change on the device shows up in the next poll's reading."""
    recorder = Recorder()
    poller = ModbusPoller(
        "pc-test",
        tcp_line(counter.port),
        UNIT_ID,
        counter.model,
        InstantClock(),
        recorder.on_reading,
        recorder.on_health,
    )

    first = await poller.poll_once()
    await counter.set_counts(12, 3)
    second = await poller.poll_once()

    assert first is not None and first.values["occupancy"] == 0
    assert second is not None and second.values["occupancy"] == 9
    assert second.values["count_in"] == 12


async def test_an_exception_reply_is_never_a_reading(
    counter: SimulatedPeopleCounter, caplog: pytest.LogCaptureFixture
) -> None:
    """Reading an unmapped address gets exception 2; no reading is made (not even zeros),
    the device goes offline after retries + 1 polls, once, and polling continues."""
    caplog.set_level(logging.DEBUG, logger="devices.modbus_poller")
    assert counter.model.modbus is not None
    registers = [register.model_dump() for register in counter.model.modbus.registers]
    registers.append({"name": "door_fault", "table": "input", "address": 50})
    model = counter_model(registers=registers, retries=2)
    recorder = Recorder()
    poller = ModbusPoller(
        "pc-test",
        tcp_line(counter.port),
        UNIT_ID,
        model,
        InstantClock(),
        recorder.on_reading,
        recorder.on_health,
    )

    task = await run_poller(poller)
    await wait_until(lambda: poller.counters.failures >= 8)
    await stop(task)

    assert recorder.readings == []
    assert len(recorder.health) == 1
    device_id, online, reason = recorder.health[0]
    assert (device_id, online) == ("pc-test", False)
    assert "exception 2 (illegal data address)" in reason
    assert poller.counters.exception_replies == poller.counters.failures
    outage_lines = [
        record
        for record in caplog.records
        if record.name == "devices.modbus_poller" and record.levelno >= logging.WARNING
    ]
    assert len(outage_lines) == 1 and "offline after 3 failed polls" in outage_lines[0].message


async def test_a_dead_unit_goes_offline_backs_off_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listening: offline after retries + 1 polls, then waits that double up to the
    cap; once a device answers on the port it is back online, logged once at INFO."""
    caplog.set_level(logging.DEBUG, logger="devices.modbus_poller")
    port = free_port()
    model = counter_model(retries=1, poll_interval=1.0)
    recorder, clock = Recorder(), InstantClock()
    poller = ModbusPoller(
        "pc-dead",
        tcp_line(port),
        UNIT_ID,
        model,
        clock,
        recorder.on_reading,
        recorder.on_health,
        max_backoff=16.0,
    )

    task = await run_poller(poller)
    await wait_until(lambda: len(clock.sleeps) >= 9)
    reason = f"read input 0+6: {LOOPBACK}:{port}: cannot open: "
    assert [h[:2] for h in recorder.health] == [("pc-dead", False)]
    assert recorder.health[0][2].startswith(reason)
    # One wait at the interval before the second failure; once offline the waits go
    # 1, 2, 4, 8, 16, 16... seconds, each within +-20 % jitter but never below 1.
    assert clock.sleeps[0] == 1.0
    expected = [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    for asked, nominal in zip(clock.sleeps[1:], expected, strict=False):
        assert max(1.0, nominal * 0.8) <= asked + 1e-9 <= nominal * 1.2 + 1e-9

    revived = SimulatedPeopleCounter(
        "pc-dead", model, clock, port=port, unit_id=UNIT_ID
    )  # the unit comes back
    await revived.start()
    try:
        await wait_until(lambda: len(recorder.readings) >= 1)
    finally:
        await stop(task)
        await revived.stop()

    assert recorder.health[-1] == ("pc-dead", True, "answering polls")
    assert poller.counters.consecutive_failures == 0
    poller_lines = [
        (record.levelname, record.message)
        for record in caplog.records
        if record.name == "devices.modbus_poller"
    ]
    assert [level for level, _ in poller_lines if level in ("WARNING", "ERROR")] == ["ERROR"]
    assert any(level == "INFO" and "back online" in text for level, text in poller_lines)
    assert sum("still offline" in text for _, text in poller_lines) >= 5


async def test_a_unit_that_never_answers_times_out_without_readings(silent_port: int) -> None:
    """A connection that stays silent is a timeout per poll; after retries + 1 the device
    is offline, and no reading is ever made."""
    model = counter_model(timeout=0.2, retries=1)
    recorder = Recorder()
    poller = ModbusPoller(
        "pc-silent",
        tcp_line(silent_port),
        UNIT_ID,
        model,
        InstantClock(),
        recorder.on_reading,
        recorder.on_health,
    )

    assert await poller.poll_once() is None
    assert await poller.poll_once() is None

    assert recorder.readings == []
    assert poller.counters.timeouts == 2
    assert [online for _, online, _ in recorder.health] == [False]
    assert "no reply" in recorder.health[0][2]


async def test_a_failing_callback_does_not_stop_polling(counter: SimulatedPeopleCounter) -> None:
    """A reading handler that raises is logged; the poller keeps polling."""
    calls = 0

    async def broken_handler(reading: Reading) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("handler bug")

    recorder = Recorder()
    poller = ModbusPoller(
        "pc-test",
        tcp_line(counter.port),
        UNIT_ID,
        counter.model,
        InstantClock(),
        broken_handler,
        recorder.on_health,
    )

    task = await run_poller(poller)
    await wait_until(lambda: calls >= 3)
    await stop(task)

    assert poller.counters.readings >= 3 and poller.online is True


async def test_cancelling_the_poller_always_stops_it(counter: SimulatedPeopleCounter) -> None:
    """Cancelled at any moment, even as a reply arrives, run() ends: pymodbus's
    wait_for on Python 3.11 can swallow such a cancellation, the poller must not."""
    for attempt in range(60):
        recorder = Recorder()
        poller = ModbusPoller(
            "pc-test",
            tcp_line(counter.port),
            UNIT_ID,
            counter.model,
            InstantClock(),
            recorder.on_reading,
            recorder.on_health,
        )
        task = await run_poller(poller)
        await wait_until(functools.partial(has_readings, recorder, 1 + attempt % 3))
        await asyncio.sleep(0.0001 * (attempt % 7))

        task.cancel()
        async with asyncio.timeout(2.0):
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()


async def test_each_read_is_timed_in_the_latency_histogram(
    counter: SimulatedPeopleCounter,
) -> None:
    """Every Modbus read the poller makes adds one observation to
    hallhub_modbus_request_duration_seconds for its register table."""
    from hub import metrics

    def observed() -> float:
        value = metrics.REGISTRY.get_sample_value(
            "hallhub_modbus_request_duration_seconds_count", {"table": "holding"}
        )
        return value or 0.0

    before = observed()
    recorder = Recorder()
    poller = ModbusPoller(
        "pc-test", tcp_line(counter.port), UNIT_ID, counter.model, InstantClock(),
        recorder.on_reading, recorder.on_health,
    )  # fmt: skip
    task = await run_poller(poller)
    await wait_until(lambda: len(recorder.readings) >= 2)
    await stop(task)

    assert observed() - before >= len(recorder.readings)
