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
    ] = "uint16"
    byte_order: Literal["big", "little"] = "big"
    word_order: Literal["big", "little"] = "big"
    length: int = Field(default=1, ge=1, le=125, description="registers, for strings")
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""


class ModbusSpec(_Strict):
    """How a model is polled over Modbus."""

    poll_interval: float = Field(default=1.0, gt=0)
    timeout: float = Field(default=1.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10)
    message: Name = "reading"
    lane: Lane = Lane.TELEMETRY
    registers: tuple[Register, ...] = Field(min_length=1)


class DeviceModel(_Strict):
    """A device model: one file in ``firmware_configs/``."""

    model: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
    kind: DeviceKind
    vendor: str = ""
    description: str = ""
    firmware: str = ""
    protocol: Literal["mqtt", "modbus"]
    mqtt: MqttSpec | None = None
    modbus: ModbusSpec | None = None

    @pydantic.model_validator(mode="after")
    def _protocol_has_its_section(self) -> DeviceModel:
        if self.protocol == "mqtt" and self.mqtt is None:
            raise ValueError("protocol is mqtt but there is no 'mqtt' section")
        if self.protocol == "modbus" and self.modbus is None:
            raise ValueError("protocol is modbus but there is no 'modbus' section")
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
