"""Modbus lines and their faults: RS-485 on socat pty pairs, gateways on loopback TCP.

The devices are real: a pymodbus serial server on the device end of a pty pair, and
`FaultySlave`, which writes raw frames so it can answer for the wrong unit, send
noise, break a CRC or answer too late. Poll timing runs on `InstantClock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices.errors import CommandError, LineGarbled, LineTimeout, ModbusWriteError
from devices.modbus_frames import FrameError, parse_rtu, read_request, registers_of, rtu_frame
from devices.modbus_line import (
    ALARM_PRIORITY,
    OFFLINE_PRIORITY,
    LineSettings,
    ModbusLine,
    ModbusLines,
)
from devices.modbus_poller import ModbusPoller
from devices.profiles import DeviceModel, load_models, shipped_models_dir
from devices.registers import encode_register
from devices.simulators.modbus_faults import FaultySlave, FaultyUnit, unit_for
from hub import metrics
from tests.serial_lines import pty_pair
from tests.test_modbus_poller import InstantClock, Recorder, free_port

MODELS = load_models(shipped_models_dir())
COUNTER = MODELS["people-counter-pc4-modbus"]
ALARM = MODELS["toilet-alarm-ta3-modbus"]


def model_with(model: DeviceModel, **modbus_changes: Any) -> DeviceModel:
    data = model.model_dump(mode="json")
    data["modbus"].update(modbus_changes)
    return DeviceModel.model_validate(data)


def counter_unit(unit_id: int, count_in: int, fault: Any = "none") -> FaultyUnit:
    unit = unit_for(COUNTER, unit_id, fault)
    unit.set_value("count_in", count_in)
    unit.set_value("firmware_version", 0x0402)
    return unit


class Lines:
    """Lines made by a test, closed at its end."""

    def __init__(self) -> None:
        self.made: list[ModbusLine] = []

    def __call__(self, **settings: Any) -> ModbusLine:
        line = ModbusLine(LineSettings(**settings))
        self.made.append(line)
        return line


@pytest.fixture
async def lines() -> AsyncIterator[Lines]:
    made = Lines()
    yield made
    for line in made.made:
        line.close()
    await asyncio.sleep(0)


@pytest.fixture
def rs485(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with pty_pair(tmp_path) as ends:
        yield ends


@pytest.fixture
async def slaves() -> AsyncIterator[list[FaultySlave]]:
    started: list[FaultySlave] = []
    yield started
    for slave in started:
        await slave.stop()


def poller(
    line: ModbusLine, unit_id: int, model: DeviceModel = COUNTER, **options: Any
) -> tuple[ModbusPoller, Recorder]:
    recorder = Recorder()
    clock = options.pop("clock", InstantClock())
    polling = ModbusPoller(
        f"unit-{unit_id}",
        line,
        unit_id,
        model,
        clock,
        recorder.on_reading,
        recorder.on_health,
        **options,
    )
    return polling, recorder


def polls_counted(result: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("hallhub_modbus_polls_total", {"result": result}) or 0.0
    )


def count_in(polling: ModbusPoller, recorder: Recorder) -> list[object]:
    return [reading.values["count_in"] for reading in recorder.readings]


# -- transports ---------------------------------------------------------------------


def pymodbus_counter(unit_id: int, total_in: int) -> SimDevice:
    assert COUNTER.modbus is not None
    registers = {register.name: register for register in COUNTER.modbus.registers}
    words = encode_register(registers["count_in"], total_in) + [0] * 4
    return SimDevice(
        id=unit_id,
        simdata=(
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(100, values=[0x0402], datatype=DataType.REGISTERS)],
            [SimData(0, values=words, datatype=DataType.REGISTERS)],
        ),
    )


async def test_units_sharing_an_rs485_line_are_each_read_from_a_pymodbus_serial_server(
    rs485: tuple[str, str], lines: Lines
) -> None:
    """Two unit ids behind one serial port: each poll gets its own unit's totals, RTU
    framed by hallhub and answered by pymodbus's serial server."""
    hub_end, device_end = rs485
    server = ModbusSerialServer(
        [pymodbus_counter(1, 70_001), pymodbus_counter(2, 420)], port=device_end, baudrate=19200
    )
    await server.serve_forever(background=True)
    try:
        line = lines(serial_port=hub_end, baudrate=19200)
        first, first_seen = poller(line, 1)
        second, second_seen = poller(line, 2)
        for _ in range(3):
            await asyncio.gather(first.poll_once(), second.poll_once())
    finally:
        await server.shutdown()

    assert count_in(first, first_seen) == [70_001] * 3
    assert count_in(second, second_seen) == [420] * 3
    assert line.settings.framing == "rtu"


async def test_one_request_at_a_time_with_the_inter_frame_gap(
    rs485: tuple[str, str], lines: Lines, slaves: list[FaultySlave]
) -> None:
    """Concurrent polls of two units never overlap on the line, and each request
    starts at least 3.5 character times (32 ms at 1200 baud) after the last reply."""
    hub_end, device_end = rs485
    slave = FaultySlave([counter_unit(1, 5), counter_unit(2, 6)])
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=1200)
    line = lines(serial_port=hub_end, baudrate=1200)
    pollers = [poller(line, 1), poller(line, 2)]

    for _ in range(3):
        await asyncio.gather(*(polling.poll_once() for polling, _ in pollers))

    directions = [direction for direction, _ in slave.frame_times]
    assert directions == ["in", "out"] * 12  # 2 units x 2 blocks x 3 polls
    gaps = [
        slave.frame_times[i + 1][1] - slave.frame_times[i][1]
        for i in range(1, len(slave.frame_times) - 1, 2)
    ]
    assert min(gaps) >= line.settings.frame_gap == pytest.approx(3.5 * 11 / 1200)
    assert [len(seen.readings) for _, seen in pollers] == [3, 3]


async def test_alarm_inputs_go_ahead_of_every_other_unit_on_their_line(
    rs485: tuple[str, str], lines: Lines, slaves: list[FaultySlave]
) -> None:
    """With counter reads queued behind one in flight, an alarm read queued last is sent
    next, and a read for a unit that went offline is sent after all the others."""
    hub_end, device_end = rs485
    units = [counter_unit(unit_id, unit_id) for unit_id in (1, 2, 3, 4, 5)]
    slave = FaultySlave(units)
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=19200)
    line = lines(serial_port=hub_end, baudrate=19200)
    pdu = read_request("input", 0, 2)

    calls = [line.request(1, pdu, 1.0), line.request(5, pdu, 1.0, priority=OFFLINE_PRIORITY)]
    calls += [line.request(unit_id, pdu, 1.0) for unit_id in (2, 3)]
    calls.append(line.request(4, pdu, 1.0, priority=ALARM_PRIORITY))
    replies = await asyncio.gather(*calls)

    assert slave.request_log == [1, 4, 2, 3, 5]
    assert [registers_of(reply.data)[0] for reply in replies] == [1, 5, 2, 3, 4]


async def test_an_echoing_adapter_is_read_past_when_configured(
    rs485: tuple[str, str], lines: Lines, slaves: list[FaultySlave]
) -> None:
    """An adapter that echoes every frame: with echo on, the echo is skipped and the
    reading is right; with echo off, the echo is never taken for a reading."""
    hub_end, device_end = rs485
    slave = FaultySlave([counter_unit(1, 77)], echo=True)
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=19200)

    echoing, seen = poller(lines(serial_port=hub_end, baudrate=19200, echo=True), 1)
    await echoing.poll_once()
    lines.made[-1].close()
    unaware, unaware_seen = poller(lines(serial_port=hub_end, baudrate=19200), 1)
    await unaware.poll_once()

    assert count_in(echoing, seen) == [77]
    assert unaware_seen.readings == [] and unaware.counters.failures == 1


async def test_a_serial_port_that_vanishes_is_reopened_without_a_restart(
    tmp_path: Path, lines: Lines
) -> None:
    """The adapter disappears (socat and its links gone): polls fail and the unit goes
    offline; once the same path exists again, the next poll reopens it and reads."""
    hub_end = str(tmp_path / "by-id-usb-rs485-port0")
    with pty_pair(tmp_path, ("by-id-usb-rs485-port0", "device-a")) as (_, device_end):
        slave = FaultySlave([counter_unit(1, 10)])
        slave.serve_serial(device_end, baudrate=19200)
        line = lines(serial_port=hub_end, baudrate=19200)
        polling, seen = poller(line, 1, model_with(COUNTER, retries=0, timeout=1.0))
        assert await polling.poll_once() is not None
        await slave.stop()

    assert await polling.poll_once() is None
    assert await polling.poll_once() is None
    assert polling.online is False and polling.counters.link_errors >= 1

    with pty_pair(tmp_path, ("by-id-usb-rs485-port0", "device-b")) as (_, device_end):
        revived = FaultySlave([counter_unit(1, 11)])
        revived.serve_serial(device_end, baudrate=19200)
        try:
            assert await polling.poll_once() is not None
        finally:
            await revived.stop()
            line.close()

    assert count_in(polling, seen) == [10, 11]
    assert polling.online is True and line.reopens == 2


async def test_a_single_connection_gateway_serves_all_its_units_over_one_connection(
    lines: Lines, slaves: list[FaultySlave]
) -> None:
    """A gateway that refuses a second TCP connection: the hub's units behind it share
    one line, so every unit is read and no connection is ever refused."""
    slave = FaultySlave([counter_unit(u, 100 + u) for u in (1, 2, 3)], one_connection=True)
    slaves.append(slave)
    port = await slave.serve_tcp()
    hub_lines = ModbusLines()
    settings = LineSettings(host="127.0.0.1", port=port)
    pollers = [poller(hub_lines.line_for(settings), unit_id) for unit_id in (1, 2, 3)]
    try:
        for _ in range(3):
            await asyncio.gather(*(polling.poll_once() for polling, _ in pollers))
    finally:
        hub_lines.close()

    assert [count_in(p, seen) for p, seen in pollers] == [[101] * 3, [102] * 3, [103] * 3]
    assert slave.most_connections == 1 and slave.refused_connections == 0


async def test_a_gateway_speaking_rtu_framing_over_tcp(
    lines: Lines, slaves: list[FaultySlave]
) -> None:
    """A transparent gateway passes RTU frames (CRC, no MBAP header) over TCP."""
    slave = FaultySlave([counter_unit(9, 1234)], framing="rtu")
    slaves.append(slave)
    port = await slave.serve_tcp()
    polling, seen = poller(lines(host="127.0.0.1", port=port, framing="rtu"), 9)

    await polling.poll_once()
    await polling.poll_once()

    assert count_in(polling, seen) == [1234, 1234]


# -- faults ---------------------------------------------------------------------------


async def test_a_silent_unit_goes_offline_while_its_neighbours_keep_their_rate(
    rs485: tuple[str, str], lines: Lines, slaves: list[FaultySlave]
) -> None:
    """Unit 2 never answers: it goes offline once and its retries back off to the cap;
    unit 1 on the same line reads on every poll at its own interval."""
    hub_end, device_end = rs485
    slave = FaultySlave([counter_unit(1, 3), counter_unit(2, 4, fault="silent")])
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=19200)
    line = lines(serial_port=hub_end, baudrate=19200)
    answering = model_with(COUNTER, timeout=2.0, retries=1, poll_interval=1.0)
    dead = model_with(COUNTER, timeout=0.05, retries=1, poll_interval=1.0)
    healthy_clock, silent_clock = InstantClock(), InstantClock()
    healthy, healthy_seen = poller(line, 1, answering, clock=healthy_clock)
    silent, silent_seen = poller(line, 2, dead, clock=silent_clock, max_backoff=8.0)

    tasks = [asyncio.create_task(p.run()) for p in (healthy, silent)]
    while len(silent_clock.sleeps) < 7:
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert healthy.counters.failures == 0 and len(healthy_seen.readings) >= 3
    assert set(healthy_clock.sleeps) == {1.0}
    assert [online for _, online, _ in silent_seen.health] == [False]
    assert silent_seen.readings == [] and silent.counters.timeouts >= 7
    assert max(silent_clock.sleeps) >= 8.0 * 0.8 and max(silent_clock.sleeps) <= 8.0 * 1.2


async def test_slave_busy_is_never_a_reading_and_the_unit_backs_off(
    lines: Lines, slaves: list[FaultySlave]
) -> None:
    """Exception 6 (slave busy) makes no reading: the last one goes stale, after
    retries + 1 the unit is offline and the next poll waits longer than the interval;
    when it answers, readings return."""
    unit = counter_unit(1, 50, fault="busy")
    slave = FaultySlave([unit])
    slaves.append(slave)
    port = await slave.serve_tcp()
    polling, seen = poller(lines(host="127.0.0.1", port=port), 1, model_with(COUNTER, retries=1))

    unit.fault = "none"
    await polling.poll_once()
    unit.fault = "busy"
    for _ in range(3):
        assert await polling.poll_once() is None
    stale_while_busy, delay_while_busy = polling.stale, polling.next_delay()
    unit.fault = "none"
    recovered = await polling.poll_once()

    assert polling.counters.exception_replies == 3
    assert "exception 6 (server device busy)" in seen.health[1][2]
    assert stale_while_busy and not polling.stale
    assert delay_while_busy > COUNTER.modbus.poll_interval  # type: ignore[union-attr]
    assert recovered is not None and count_in(polling, seen) == [50, 50]


async def test_a_reply_from_another_unit_id_is_never_the_answer(
    rs485: tuple[str, str], lines: Lines, slaves: list[FaultySlave]
) -> None:
    """A reply carrying unit 6 to a request for unit 5 is refused (correct CRC and all);
    the next poll, answered properly, reads the right totals."""
    hub_end, device_end = rs485
    unit = counter_unit(5, 321, fault="wrong_unit")
    slave = FaultySlave([unit])
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=19200)
    polling, seen = poller(lines(serial_port=hub_end, baudrate=19200), 5)

    assert await polling.poll_once() is None
    unit.fault = "none"
    assert await polling.poll_once() is not None

    assert polling.counters.bad_replies == 1
    assert count_in(polling, seen) == [321]


@pytest.mark.parametrize("fault", ["garbage", "bad_crc"])
async def test_garbage_and_crc_errors_resynchronise_the_line(
    fault: Any, rs485: tuple[str, str], lines: Lines, slaves: list[FaultySlave]
) -> None:
    """Noise or a broken CRC is no reading; the line drops the bytes and the next read
    is exactly right."""
    hub_end, device_end = rs485
    unit = counter_unit(3, 65_537, fault=fault)
    slave = FaultySlave([unit])
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=19200)
    line = lines(serial_port=hub_end, baudrate=19200)
    polling, seen = poller(line, 3, model_with(COUNTER, timeout=1.0))

    assert await polling.poll_once() is None
    unit.fault = "none"
    assert await polling.poll_once() is not None

    assert seen.readings[0].values["count_in"] == 65_537
    assert line.resyncs + polling.counters.timeouts >= 1


async def test_a_line_full_of_garbage_warns_once_until_it_is_clean_again(
    rs485: tuple[str, str],
    lines: Lines,
    slaves: list[FaultySlave],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every garbled reply resynchronises the line and is counted in the metrics, but
    only the first of a run is a WARNING; after a clean reply the next garbage warns
    again."""
    hub_end, device_end = rs485
    unit = counter_unit(2, 8, fault="bad_crc")
    slave = FaultySlave([unit])
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=19200)
    line = lines(serial_port=hub_end, baudrate=19200)
    polling, _ = poller(line, 2)

    bad_before = polls_counted("bad_reply")
    for fault in ("bad_crc", "bad_crc", "bad_crc", "none", "bad_crc"):
        unit.fault = fault
        await polling.poll_once()

    warnings = [
        r for r in caplog.records if r.name == "devices.modbus_line" and r.levelname == "WARNING"
    ]
    assert len(warnings) == 2 and line.resyncs == 4
    assert polls_counted("bad_reply") - bad_before == 4  # on /metrics for hall IT


async def test_a_late_reply_to_a_timed_out_request_is_never_taken_for_the_next(
    lines: Lines, slaves: list[FaultySlave]
) -> None:
    """A gateway answers after the hub gave up: that answer (register 0) arrives while
    the hub waits for its next request (register 10) and is skipped by transaction id."""
    unit = FaultyUnit(1, fault="late")
    unit.set_words("input", 0, [1111])
    unit.set_words("input", 10, [2222])
    slave = FaultySlave([unit], late_delay=0.3)
    slaves.append(slave)
    port = await slave.serve_tcp()
    line = lines(host="127.0.0.1", port=port)

    with pytest.raises(LineTimeout):
        await line.request(1, read_request("input", 0, 1), 0.2)
    reply = await line.request(1, read_request("input", 10, 1), 2.0)

    assert registers_of(reply.data) == [2222]


async def test_on_rtu_a_late_reply_of_another_size_is_refused_not_taken(
    rs485: tuple[str, str], lines: Lines, slaves: list[FaultySlave]
) -> None:
    """RTU has no transaction id: a late answer to a timed-out read of two registers that
    arrives while a one-register read waits is refused by its byte count."""
    hub_end, device_end = rs485
    unit = FaultyUnit(1, fault="late")
    unit.set_words("input", 0, [1111, 1112])
    unit.set_words("input", 10, [2222])
    slave = FaultySlave([unit], late_delay=0.3)
    slaves.append(slave)
    slave.serve_serial(device_end, baudrate=19200)
    line = lines(serial_port=hub_end, baudrate=19200)

    with pytest.raises(LineTimeout):
        await line.request(1, read_request("input", 0, 2), 0.2)
    with pytest.raises(LineGarbled, match="reply of 4 bytes to a read of 2 bytes"):
        await line.request(1, read_request("input", 10, 1), 2.0)
    unit.fault = "none"
    reply = await line.request(1, read_request("input", 10, 1), 2.0)

    assert registers_of(reply.data) == [2222]


def test_the_crc_is_the_one_modbus_devices_compute() -> None:
    """The reference frame "read 10 holding registers of unit 1" ends in CRC C5 CD
    (low byte first), and a frame with one bit flipped is refused."""
    frame = rtu_frame(1, read_request("holding", 0, 10))

    assert frame.hex(" ") == "01 03 00 00 00 0a c5 cd"
    with pytest.raises(FrameError, match="CRC"):
        parse_rtu(frame[:-1] + b"\xcc")


# -- alarms, counters, writes -----------------------------------------------------------


async def test_a_modbus_toilet_alarm_sends_call_and_reset_like_the_mqtt_one(
    lines: Lines, slaves: list[FaultySlave]
) -> None:
    """The discrete input latching on is one "call" on the alarm lane, its fall one
    "reset"; polls in between make no events, as the MQTT alarm sends none."""
    unit = unit_for(ALARM, 4)
    slave = FaultySlave([unit])
    slaves.append(slave)
    port = await slave.serve_tcp()
    polling, seen = poller(lines(host="127.0.0.1", port=port), 4, ALARM)

    await polling.poll_once()
    unit.set_value("call_latched", True)
    await polling.poll_once()
    await polling.poll_once()
    unit.set_value("call_latched", False)
    await polling.poll_once()

    assert [(r.message, r.lane.value) for r in seen.readings] == [
        ("call", "alarm"),
        ("reset", "alarm"),
    ]
    assert ALARM.modbus is not None and ALARM.modbus.poll_interval <= 0.2


def test_an_alarm_model_polled_slower_than_200_ms_is_refused() -> None:
    """A model with alarm inputs and a 1 s poll interval does not load."""
    with pytest.raises(ValueError, match=r"polled every 0\.2s or faster"):
        model_with(ALARM, poll_interval=1.0)


async def test_people_counts_survive_wraps_and_reboots_and_rezero_at_closing(
    lines: Lines, slaves: list[FaultySlave]
) -> None:
    """Deltas stay right across a uint32 wrap and a reboot to zero, the zone count never
    goes below zero, and it is zero again once the hall has closed."""
    unit = counter_unit(1, 2**32 - 2)
    slave = FaultySlave([unit])
    slaves.append(slave)
    port = await slave.serve_tcp()
    hall_open = [True]
    polling, seen = poller(lines(host="127.0.0.1", port=port), 1, is_open=lambda wall: hall_open[0])

    await polling.poll_once()
    unit.set_value("count_in", 3)  # wrapped: 5 people came in
    unit.set_value("count_out", 2)
    await polling.poll_once()
    unit.reboot()  # both totals back to zero
    unit.set_value("count_out", 1)  # one left since the reboot
    await polling.poll_once()
    unit.set_value("count_out", 6)  # five more left than the zone holds
    await polling.poll_once()
    unit.set_value("count_in", 4)
    await polling.poll_once()
    hall_open[0] = False
    await polling.poll_once()

    deltas = [(r.values["count_in_delta"], r.values["count_out_delta"]) for r in seen.readings]
    assert deltas == [(0, 0), (5, 2), (0, 1), (0, 5), (4, 0), (0, 0)]
    assert [r.values["people_inside"] for r in seen.readings] == [0, 3, 2, 0, 4, 0]
    assert polling.derivations.zone.clamped == 3


async def test_a_write_is_read_back_and_a_write_that_did_not_stick_is_an_error(
    lines: Lines, slaves: list[FaultySlave]
) -> None:
    """Switching the alarm's lamp coil reads it back, directly or by the model's "lamp"
    command; a unit that acknowledges writes but keeps the old value, or a command
    argument the model does not know, fails with the values named."""
    unit = unit_for(ALARM, 2)
    slave = FaultySlave([unit])
    slaves.append(slave)
    port = await slave.serve_tcp()
    polling, _ = poller(lines(host="127.0.0.1", port=port), 2, ALARM)

    assert await polling.write("lamp", True) is True
    assert unit.tables["coil"][0] == 1
    assert await polling.command("lamp", {"state": "off"}) is False
    with pytest.raises(CommandError, match="state='blink' is not one of"):
        await polling.command("lamp", {"state": "blink"})
    unit.fault = "read_only"
    with pytest.raises(ModbusWriteError, match="wrote True, reads back False"):
        await polling.write("lamp", True)
    with pytest.raises(ModbusWriteError, match="no holding register or coil"):
        await polling.write("call_latched", True)


SETPOINTS = DeviceModel.model_validate(
    {
        "model": "test-setpoints",
        "kind": "occupancy_sensor",
        "protocol": "modbus",
        "modbus": {
            "registers": [
                {"name": "threshold", "table": "holding", "address": 0, "scale": 0.1},
                {"name": "gain", "table": "holding", "address": 1, "type": "float32",
                 "word_order": "little"},
                {"name": "label", "table": "holding", "address": 3, "type": "string", "length": 4},
            ]
        },
    }
)  # fmt: skip


async def test_writes_to_a_pymodbus_server_read_back_to_the_register_resolution(
    lines: Lines,
) -> None:
    """Holding registers of a real pymodbus server: a scaled int16, a word-swapped
    float32 and a string are written (functions 6 and 16) and verified by read-back,
    though 21.7 at scale 0.1 and 0.3 as float32 do not read back bit for bit."""
    port = free_port()
    holding = [SimData(0, values=[0] * 8, datatype=DataType.REGISTERS)]
    idle = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    inputs = [SimData(0, values=[0], datatype=DataType.REGISTERS)]
    device = SimDevice(id=5, simdata=(idle, idle, holding, inputs))
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        polling, _ = poller(lines(host="127.0.0.1", port=port), 5, SETPOINTS)
        threshold = await polling.write("threshold", 21.7)
        gain = await polling.write("gain", 0.3)
        label = await polling.write("label", "2F-A")
        with pytest.raises(ModbusWriteError, match="does not fit"):
            await polling.write("threshold", 5000.0)
    finally:
        await server.shutdown()

    assert threshold == pytest.approx(21.7) and gain == pytest.approx(0.3)
    assert label == "2F-A"
