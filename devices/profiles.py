"""Device models, loaded from the YAML files in ``firmware_configs/``.

A device model says how one make of device talks: for MQTT, the messages it
publishes and the fields of each; for Modbus, its register map and poll timing. A
new model is a new file; no code changes. Each file is validated at load, and an
error names the file, the line, the model and the field.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from hub.errors import ConfigError
from hub.events import Lane
from hub.yamlfile import describe_errors, read_yaml

logger = logging.getLogger(__name__)

# The message a device answers every command with: its request id and the result.
COMMAND_ACK = "command_ack"

DeviceKind = Literal["ticket_printer", "rating_pad", "toilet_alarm", "occupancy_sensor"]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PayloadField(_Strict):
    """One field of a JSON payload."""

    type: Literal["int", "float", "string", "bool", "enum"]
    required: bool = True
    min: float | None = None
    max: float | None = None
    max_length: int = 256
    values: tuple[str, ...] = ()


class Message(_Strict):
    """One kind of message a device publishes, on ``<topic root>/<device id>/<name>``."""

    lane: Lane
    fields: dict[Name, PayloadField] = {}
    edge: bool = Field(
        default=False,
        description="A momentary happening (a press), as opposed to a state report. "
        "Edge messages replayed from retained state never fire rules.",
    )


class TicketRequests(_Strict):
    """How a ticket printer asks the hub for a number and hears the answer.

    Both topics are under ``<topic root>/<device id>/`` and have two levels or more,
    so they never mix with the one-level device messages the ingest journals.
    """

    request: Annotated[str, Field(pattern=r"^[a-z_]+(/[a-z_]+)+$")] = "tickets/request"
    reply: Annotated[str, Field(pattern=r"^[a-z_]+(/[a-z_]+)+$")] = "command/ticket"
    reply_timeout: float = Field(default=1.0, gt=0, le=30, description="seconds per attempt")
    attempts: int = Field(default=4, ge=1, le=10)


class MqttSpec(_Strict):
    """How a model talks MQTT."""

    heartbeat_timeout: float = Field(default=120.0, gt=0)
    max_payload_bytes: int = Field(default=4096, gt=0, le=262_144)
    messages: dict[Name, Message]
    commands: dict[Name, dict[Name, PayloadField]] = Field(
        default={},
        description="Commands the device carries out, with the fields of each; sent on "
        "<topic root>/<device id>/command/<name> and answered with a command_ack message.",
    )
    command_timeout: float = Field(default=10.0, gt=0, le=600)

    @pydantic.model_validator(mode="after")
    def _commands_are_acknowledged(self) -> MqttSpec:
        if self.commands and COMMAND_ACK not in self.messages:
            raise ValueError(f"a model with commands must declare the {COMMAND_ACK!r} message")
        return self

    ticket_requests: TicketRequests | None = None


class Register(_Strict):
    """One value in a Modbus device's register map."""

    name: Name
    table: Literal["holding", "input", "coil", "discrete_input"] = "input"
    address: int = Field(ge=0, le=65535)
    type: Literal[
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float32",
        "float64",
        "string",
        "bitfield",
        "bool",
    ] = Field(default="int16", description="integers are signed unless the type says uint")
    byte_order: Literal["big", "little"] = "big"
    word_order: Literal["big", "little"] = "big"
    length: int = Field(default=1, ge=1, le=125, description="registers, for strings")
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    counter: bool = Field(
        default=False,
        description="a running total that wraps or restarts; readings gain <name>_delta",
    )


ALARM_POLL_INTERVAL = 0.2  # seconds: alarm inputs are polled at least this often


class Edge(_Strict):
    """Events made when a bool register changes, e.g. an alarm input closing."""

    input: Name
    rising: Name | None = None
    falling: Name | None = None
    lane: Lane = Lane.ALARM


class ZoneCount(_Strict):
    """People inside a zone, from the counter registers of its door."""

    entered: Name
    left: Name
    value: Name = "people_inside"


class ModbusCommand(_Strict):
    """A command carried out by writing one register or coil, then reading it back."""

    write: Name
    argument: Name = "value"
    values: dict[str, int | float | bool | str] = Field(
        default={}, description="argument value -> register value; empty: written as given"
    )


class ModbusSpec(_Strict):
    """How a model is polled over Modbus."""

    poll_interval: float = Field(default=1.0, gt=0)
    timeout: float = Field(default=1.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10)
    message: Name = "reading"
    lane: Lane = Lane.TELEMETRY
    readings: bool = Field(default=True, description="false: only edge events are reported")
    priority: Literal["normal", "alarm"] = "normal"
    edges: tuple[Edge, ...] = ()
    zone_count: ZoneCount | None = None
    commands: dict[Name, ModbusCommand] = {}
    registers: tuple[Register, ...] = Field(min_length=1)

    @pydantic.model_validator(mode="after")
    def _names_and_alarm_rate(self) -> ModbusSpec:
        by_name = {register.name: register for register in self.registers}
        for edge in self.edges:
            if by_name.get(edge.input) is None or by_name[edge.input].type != "bool":
                raise ValueError(f"edge input {edge.input} is not a bool register")
        if self.zone_count is not None:
            for name in (self.zone_count.entered, self.zone_count.left):
                if name not in by_name or not by_name[name].counter:
                    raise ValueError(f"zone_count register {name} is not a counter register")
        for name, command in self.commands.items():
            target = by_name.get(command.write)
            if target is None or target.table not in ("holding", "coil"):
                raise ValueError(f"command {name} writes {command.write}, not a holding or coil")
        for register in self.registers:
            if register.counter and not register.type.startswith("uint"):
                raise ValueError(f"counter register {register.name} must be uint16/32/64")
        alarm = self.priority == "alarm" or any(e.lane == Lane.ALARM for e in self.edges)
        if alarm and self.poll_interval > ALARM_POLL_INTERVAL:
            raise ValueError(
                f"alarm inputs are polled every {ALARM_POLL_INTERVAL}s or faster, "
                f"not every {self.poll_interval}s"
            )
        return self


class DeviceModel(_Strict):
    """A device model: one file in ``firmware_configs/``."""

    model: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
    kind: DeviceKind
    vendor: str = ""
    description: str = ""
    firmware: str = ""
    protocol: Literal["mqtt", "modbus"]
    settings: dict[Name, str | int | float | bool] = Field(
        default={},
        description="Settings the hall expects this model to run with. Each is compared "
        "with the same-named field of the device's status reports; a difference is drift.",
    )
    mqtt: MqttSpec | None = None
    modbus: ModbusSpec | None = None

    @pydantic.model_validator(mode="after")
    def _protocol_has_its_section(self) -> DeviceModel:
        if self.protocol == "mqtt" and self.mqtt is None:
            raise ValueError("protocol is mqtt but there is no 'mqtt' section")
        if self.protocol == "modbus" and self.modbus is None:
            raise ValueError("protocol is modbus but there is no 'modbus' section")
        return self

    @pydantic.model_validator(mode="after")
    def _settings_are_reported(self) -> DeviceModel:
        if self.mqtt is None or not self.settings:
            return self
        status = self.mqtt.messages.get("status")
        reported = set(status.fields) if status is not None else set()
        missing = sorted(set(self.settings) - reported)
        if missing:
            raise ValueError(f"settings {missing} are not fields of the status message")
        return self


def shipped_models_dir() -> Path:
    """The ``firmware_configs/`` folder that ships with hallhub."""
    return Path(str(resources.files("firmware_configs")))


def load_model_file(path: Path) -> DeviceModel:
    """Load and validate one device model file."""
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["a device model must be a mapping"])
    try:
        return DeviceModel.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = describe_errors(exc, lines)
        name = data.get("model", "?")
        raise ConfigError(str(path), [f"model {name}: {p}" for p in problems]) from exc


def load_models(*folders: Path) -> dict[str, DeviceModel]:
    """Every model in `folders`; later folders override earlier ones by model name."""
    models: dict[str, DeviceModel] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            model = load_model_file(path)
            if model.model in models:
                logger.info("device model %s from %s overrides the shipped one", model.model, path)
            models[model.model] = model
    return models
