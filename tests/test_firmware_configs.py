"""The device models shipped in firmware_configs/: valid, complete, and loud when broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.profiles import DeviceModel, load_model_file, load_models, shipped_models_dir
from devices.registers import plan_reads
from hub.errors import ConfigError
from hub.events import Lane

MODEL_FILES = sorted(shipped_models_dir().glob("*.yaml"))
RATING_LEVELS = ("非常满意", "满意", "基本满意", "不满意", "非常不满意")

# Messages each kind must publish over MQTT, with their lane.
KIND_MESSAGES: dict[str, dict[str, Lane]] = {
    "ticket_printer": {"ticket": Lane.TICKET, "status": Lane.HEALTH, "heartbeat": Lane.HEALTH},
    "rating_pad": {"rating": Lane.RATING, "status": Lane.HEALTH, "heartbeat": Lane.HEALTH},
    "toilet_alarm": {
        "call": Lane.ALARM,
        "reset": Lane.ALARM,
        "status": Lane.HEALTH,
        "heartbeat": Lane.HEALTH,
    },
    "occupancy_sensor": {"count": Lane.TELEMETRY, "status": Lane.HEALTH, "heartbeat": Lane.HEALTH},
}


@pytest.fixture(scope="module")
def models() -> dict[str, DeviceModel]:
    return load_models(shipped_models_dir())


@pytest.mark.parametrize("path", MODEL_FILES, ids=[path.name for path in MODEL_FILES])
def test_every_model_file_loads_and_is_named_after_its_model(path: Path) -> None:
    """Each file validates against the schema and its name is `<model>.yaml`."""
    model = load_model_file(path)
    assert path.stem == model.model


def test_every_kind_has_an_mqtt_model_and_there_is_a_modbus_counter(
    models: dict[str, DeviceModel],
) -> None:
    """At least one MQTT model per kind ships, plus a Modbus occupancy sensor."""
    mqtt_kinds = {model.kind for model in models.values() if model.protocol == "mqtt"}
    assert mqtt_kinds == set(KIND_MESSAGES)
    assert any(
        model.protocol == "modbus" and model.kind == "occupancy_sensor" for model in models.values()
    )


def test_mqtt_models_have_the_kind_messages_on_the_right_lanes(
    models: dict[str, DeviceModel],
) -> None:
    """Every MQTT model declares its kind's messages, each on the lane the hub expects."""
    for model in models.values():
        if model.mqtt is None:
            continue
        lanes = {name: message.lane for name, message in model.mqtt.messages.items()}
        for name, lane in KIND_MESSAGES[model.kind].items():
            assert lanes.get(name) == lane, f"{model.model}: {name}"


def test_status_and_heartbeat_follow_the_health_convention(
    models: dict[str, DeviceModel],
) -> None:
    """status has a required bool `online`; the timeout allows three 30 s heartbeats."""
    for model in models.values():
        if model.mqtt is None:
            continue
        online = model.mqtt.messages["status"].fields["online"]
        assert online.type == "bool" and online.required, model.model
        heartbeat = model.mqtt.messages["heartbeat"]
        assert all(not field.required for field in heartbeat.fields.values()), model.model
        assert 60 <= model.mqtt.heartbeat_timeout <= 180, model.model


def test_happenings_are_edges_that_are_never_retained(models: dict[str, DeviceModel]) -> None:
    """Tickets, ratings and toilet calls are edges a retained replay cannot re-fire."""
    for model in models.values():
        if model.mqtt is None:
            continue
        for name in ("ticket", "rating", "call"):
            message = model.mqtt.messages.get(name)
            if message is not None:
                assert message.edge, f"{model.model}: {name}"


def test_rating_levels_are_the_five_standard_names(models: dict[str, DeviceModel]) -> None:
    """Rating pads send level names, best first, exactly as GB/T 39735-2020 lists them."""
    pads = [model for model in models.values() if model.kind == "rating_pad"]
    assert pads
    for model in pads:
        assert model.mqtt is not None
        assert model.mqtt.messages["rating"].fields["level"].values == RATING_LEVELS


def test_modbus_counter_map_has_typed_counts_and_plans_cleanly(
    models: dict[str, DeviceModel],
) -> None:
    """count_in/count_out are uint32 input registers with a word order, occupancy int16."""
    counters = [model for model in models.values() if model.kind == "occupancy_sensor"]
    counters = [model for model in counters if model.modbus is not None]
    assert counters
    for model in counters:
        assert model.modbus is not None
        registers = {register.name: register for register in model.modbus.registers}
        for name in ("count_in", "count_out"):
            assert registers[name].type == "uint32" and registers[name].table == "input"
        assert registers["occupancy"].type == "int16"
        assert plan_reads(model.modbus.registers, device_id=model.model)


def test_a_broken_model_names_file_line_model_and_field(tmp_path: Path) -> None:
    """A wrong field type is reported with the file, its line, the model and the field path."""
    original = (shipped_models_dir() / "toilet-alarm-ta1.yaml").read_text(encoding="utf-8")
    lines = original.splitlines()
    broken_line = next(
        number
        for number, line in enumerate(lines, start=1)
        if line.strip().startswith("type: bool") and "online" in lines[number - 2]
    )
    lines[broken_line - 1] = lines[broken_line - 1].replace("type: bool", "type: boolean")
    path = tmp_path / "toilet-alarm-ta1.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_model_file(path)

    message = str(caught.value)
    assert str(path) in message
    assert "model toilet-alarm-ta1" in message
    assert f"line {broken_line}" in message
    assert "mqtt.messages.status.fields.online.type" in message


def test_a_modbus_model_with_an_unknown_register_type_is_refused(tmp_path: Path) -> None:
    """A register type the decoder does not know is refused at load, naming the register."""
    path = tmp_path / "bad-counter.yaml"
    path.write_text(
        "model: bad-counter\n"
        "kind: occupancy_sensor\n"
        "protocol: modbus\n"
        "modbus:\n"
        "  registers:\n"
        "    - name: occupancy\n"
        "      address: 4\n"
        "      type: int24\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"model bad-counter: line 8: modbus\.registers\.0\.type"):
        load_model_file(path)
