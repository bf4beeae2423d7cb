"""Modbus units inside a running hub: configuration, alarm inputs, commands, health."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pydantic
import pytest

from devices.modbus_line import LineSettings, ModbusLines
from devices.modbus_units import line_settings
from devices.profiles import load_models, shipped_models_dir
from devices.simulators.modbus_faults import FaultySlave, unit_for
from hub.broker import ManagedBroker
from hub.config import ModbusAddress
from hub.errors import ConfigError
from hub.service import HubService
from tests.hubkit import eventually, hub_config
from tests.serial_lines import pty_pair

MODELS = load_models(shipped_models_dir())
ALARM = MODELS["toilet-alarm-ta3-modbus"]
COUNTER = MODELS["people-counter-pc4-modbus"]


def alerts(hub: HubService, state: str) -> int:
    with hub.journal.reading() as conn:
        sql = "SELECT COUNT(*) FROM alerts WHERE device_id = 'wc-2f' AND state = ?"
        return int(conn.execute(sql, (state,)).fetchone()[0])


async def test_a_modbus_toilet_alarm_opens_the_duty_desk_alert_and_lights_its_lamp(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """Pulling the cord (discrete input on) raises the same toilet-call alert as the
    MQTT alarm and switches the lamp coil on, verified by read-back; the reset at the
    spot resolves the alert and switches the lamp off."""
    unit = unit_for(ALARM, 3)
    gateway = FaultySlave([unit], one_connection=True)
    port = await gateway.serve_tcp()
    device = {
        "id": "wc-2f",
        "model": "toilet-alarm-ta3-modbus",
        "zone": "f2-accessible-wc",
        "floor": 2,
        "modbus": {"host": "127.0.0.1", "port": port, "unit_id": 3},
    }
    root = unique_topic_root.replace("/", "-")
    hub = HubService(hub_config(tmp_path / "hub", broker.port, root, [device]))
    await hub.start()
    try:
        await eventually(lambda: hub.modbus_pollers["wc-2f"].online)
        unit.set_value("call_latched", True)
        await eventually(lambda: alerts(hub, "open") == 1)
        await eventually(lambda: unit.tables["coil"][0] == 1)
        unit.set_value("call_latched", False)
        await eventually(lambda: alerts(hub, "resolved") == 1)
        await eventually(lambda: unit.tables["coil"][0] == 0)
        tracked = hub.device_commands.for_device("wc-2f")
    finally:
        await hub.stop()
        await gateway.stop()

    assert gateway.refused_connections == 0
    assert [(c["command"], c["args"], c["state"], c["sent_by"]) for c in reversed(tracked)] == [
        ("lamp", {"state": "on"}, "done", "rules"),
        ("lamp", {"state": "off"}, "done", "rules"),
    ]


async def test_the_console_commands_a_modbus_unit_by_a_verified_write(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A command from the console to a Modbus unit is a register write read back, not an
    MQTT message nobody hears: done with the value the unit holds, failed with the
    reason when the unit keeps the old value, and refused (400) for an argument the
    model does not allow, with nothing written."""
    unit = unit_for(ALARM, 3)
    gateway = FaultySlave([unit])
    port = await gateway.serve_tcp()
    device = {"id": "wc-2f", "model": ALARM.model, "modbus": {"host": "127.0.0.1", "port": port}}
    device["modbus"]["unit_id"] = 3
    root = unique_topic_root.replace("/", "-")
    hub = HubService(hub_config(tmp_path / "hub", broker.port, root, [device]))
    await hub.start()
    auth = {"Authorization": f"Bearer {hub.token}"}
    try:
        await eventually(lambda: hub.modbus_pollers["wc-2f"].online)
        async with httpx.AsyncClient(base_url=hub.console_url, headers=auth) as http:

            async def lamp(state: str) -> httpx.Response:
                body = {"command": "lamp", "args": {"state": state}, "by": "hall-it"}
                return await http.post("/api/devices/wc-2f/commands", json=body)

            lit = await lamp("on")
            coil_after_on = unit.tables["coil"][0]
            unit.fault = "read_only"
            stuck = await lamp("off")
            unit.fault = "none"
            refused = await lamp("blink")
            listed = (await http.get("/api/devices/wc-2f/commands")).json()["commands"]
    finally:
        await hub.stop()
        await gateway.stop()

    assert lit.status_code == 202 and coil_after_on == 1
    assert lit.json()["command"]["state"] == "done"
    assert lit.json()["command"]["sent_by"] == "hall-it"
    assert stuck.status_code == 202 and stuck.json()["command"]["state"] == "failed"
    assert "wrote False, reads back True" in stuck.json()["command"]["detail"]
    assert refused.status_code == 400 and "is not one of" in refused.json()["error"]
    assert [command["state"] for command in listed] == ["failed", "done"]


async def test_an_alarm_and_a_counter_sharing_an_rs485_line_both_reach_the_journal(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """Configured on one serial port, the toilet alarm's call opens the alert and the
    people counter's readings are journaled: one line, two units, both served."""
    counter = unit_for(COUNTER, 1)
    counter.set_value("count_in", 42)
    alarm = unit_for(ALARM, 3)
    with pty_pair(tmp_path) as (hub_end, device_end):
        slave = FaultySlave([counter, alarm])
        slave.serve_serial(device_end, baudrate=19200)
        line = {"serial_port": hub_end, "baudrate": 19200}
        devices = [
            {"id": "wc-2f", "model": ALARM.model, "modbus": {**line, "unit_id": 3}},
            {"id": "door-2f", "model": COUNTER.model, "modbus": {**line, "unit_id": 1}},
        ]
        root = unique_topic_root.replace("/", "-")
        hub = HubService(hub_config(tmp_path / "hub", broker.port, root, devices))
        await hub.start()
        try:
            alarm.set_value("call_latched", True)
            await eventually(lambda: alerts(hub, "open") == 1)
            await eventually(lambda: journaled(hub, "door-2f", "count"))
        finally:
            await hub.stop()
            await slave.stop()

    assert hub.modbus_pollers["wc-2f"].line is hub.modbus_pollers["door-2f"].line
    assert journaled(hub, "door-2f", "count")[0]["count_in"] == 42


def journaled(hub: HubService, device_id: str, type_: str) -> list[dict[str, object]]:
    with hub.journal.reading() as conn:
        rows = conn.execute(
            "SELECT data FROM events WHERE device_id = ? AND type = ?", (device_id, type_)
        ).fetchall()
    return [json.loads(row[0]) for row in rows]


def test_a_unit_is_on_tcp_or_on_a_serial_port_never_both() -> None:
    """A Modbus address names a host or a serial port; both, or neither, is refused."""
    with pytest.raises(pydantic.ValidationError, match="either host"):
        ModbusAddress.model_validate({"host": "127.0.0.1", "serial_port": "/dev/ttyUSB0"})
    with pytest.raises(pydantic.ValidationError, match="either host"):
        ModbusAddress.model_validate({"unit_id": 4})


def test_serial_units_use_rtu_framing_and_their_port_settings() -> None:
    """A unit on /dev/serial/by-id/... gets an RTU line with its baud rate, parity and
    echo flag; its 3.5-character gap follows the baud rate."""
    address = ModbusAddress.model_validate(
        {
            "serial_port": "/dev/serial/by-id/usb-FTDI_RS485-if00-port0",
            "baudrate": 9600,
            "parity": "E",
            "echo": True,
            "unit_id": 12,
        }
    )

    settings = line_settings(address)

    assert settings == LineSettings(
        serial_port="/dev/serial/by-id/usb-FTDI_RS485-if00-port0",
        framing="rtu",
        baudrate=9600,
        parity="E",
        echo=True,
    )
    assert settings.frame_gap == pytest.approx(3.5 * 11 / 9600)
    assert LineSettings(serial_port="/dev/x", baudrate=115_200).frame_gap == 0.00175


def test_units_on_one_port_must_agree_on_its_settings() -> None:
    """Two units on one serial port with different baud rates are refused at start,
    naming the port, rather than driving one line two ways."""
    lines = ModbusLines()
    lines.line_for(LineSettings(serial_port="/dev/serial/by-id/rs485-a", baudrate=9600))

    with pytest.raises(ConfigError, match="/dev/serial/by-id/rs485-a"):
        lines.line_for(LineSettings(serial_port="/dev/serial/by-id/rs485-a", baudrate=19200))
