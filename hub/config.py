"""The hall configuration: one YAML file that hall IT writes.

Relative paths in the file are taken relative to the file itself, so a hall's
configuration folder can be moved as a whole. Every section is validated at load;
an error names the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from hub.alerts.settings import AlertsSection
from hub.errors import ConfigError
from hub.events import Lane
from hub.ops.settings import OperationsSection
from hub.ratings.settings import RatingsSection
from hub.tickets.settings import TicketsSection
from hub.yamlfile import Location, describe_errors, line_of, read_yaml

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
TopicRoot = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", max_length=128)]
LOOPBACK = "127.0.0.1"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubSection(_Section):
    """Who this hub is and where it keeps its files."""

    id: Identifier
    state_dir: Path = Path("var")
    timezone: str = "Asia/Shanghai"
    clock_sync: Literal["system", "assume", "never"] = Field(
        default="system",
        description="system: trust the wall clock once the kernel says NTP synchronised it; "
        "assume: always trust it (test benches); never: never trust it.",
    )


class MqttSection(_Section):
    """The MQTT broker the hall's devices publish to."""

    host: str = LOOPBACK
    port: int = Field(default=1883, ge=1, le=65535)
    topic_root: TopicRoot = "hall"
    client_id: str | None = None
    managed: bool = Field(
        default=False,
        description="Run Mosquitto as the hub's child process on host:port, with hallhub's "
        "settings and its store in <state_dir>/broker (instead of using the hall's broker).",
    )
    receive_maximum: int = Field(default=200, ge=1, le=65535)
    session_expiry: int = Field(default=7 * 24 * 3600, ge=0)
    keepalive: int = Field(default=30, ge=1, le=65535)
    username: str | None = Field(default=None, description="with the broker's auth on: 'hub'")
    password_file: Path | None = None
    crew_topic_root: TopicRoot = "hallhub"
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT version the hub speaks to the broker; devices may differ."
    )


class ConsoleSection(_Section):
    """The console and API for hall IT."""

    host: str = LOOPBACK
    port: int = Field(default=8080, ge=0, le=65535)
    token_file: Path | None = None
    metrics_auth: bool = True  # false lets a Prometheus on the hall LAN scrape without a token


class CitySection(_Section):
    """The city platform this hub forwards events to (or see ``hallhub enroll``).

    Signing keys come either from `keys_file` (rotating keys, the newest signs) or
    from one `key_id` with its `secret_file`. `ca_file` turns on HTTPS trusting only
    that CA; `client_cert` and `client_key` add mutual TLS.
    """

    url: str
    key_id: str | None = None
    secret_file: Path | None = None
    keys_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    batch_size: int = Field(default=500, ge=1, le=10_000)
    backlog_cap_mib: dict[Lane, int] = Field(
        default={Lane.TELEMETRY: 256, Lane.HEALTH: 64},
        description="Backlog cap per lane in MiB: telemetry and health are compacted "
        "above it, the other lanes only raise an alert.",
    )
    alert_free_mib: int = Field(default=512, ge=0)

    @model_validator(mode="after")
    def _one_way_to_sign(self) -> CitySection:
        single = self.key_id is not None and self.secret_file is not None
        if single == (self.keys_file is not None):
            raise ValueError("give either keys_file, or key_id with secret_file")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        if self.client_cert is not None and self.ca_file is None:
            raise ValueError("client_cert needs ca_file (mutual TLS runs over HTTPS)")
        return self

    def resolve_paths(self, under: Callable[[Path], Path]) -> None:
        """Make this section's paths absolute with `under`."""
        for name in ("secret_file", "keys_file", "ca_file", "client_cert", "client_key"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, under(value))


class ModbusAddress(_Section):
    """Where to reach a Modbus unit: a TCP device or gateway, or a serial RS-485 line.

    Units that share a gateway (host and port) or a serial port share one line.
    """

    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    framing: Literal["mbap", "rtu"] = "mbap"
    serial_port: str | None = Field(
        default=None, description="a stable name such as /dev/serial/by-id/usb-...-port0"
    )
    baudrate: int = Field(default=9600, ge=300, le=921_600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    echo: bool = Field(default=False, description="the RS-485 adapter echoes what it sends")
    unit_id: int = Field(default=1, ge=0, le=247)

    @model_validator(mode="after")
    def _one_line(self) -> ModbusAddress:
        if (self.host is None) == (self.serial_port is None):
            raise ValueError("give either host (Modbus TCP) or serial_port (RTU), not both")
        return self


class DeviceSpec(_Section):
    """One device of the hall, as hall IT commissioned it."""

    id: Identifier
    model: str
    zone: str = ""
    floor: int | None = None
    window: str | None = None
    modbus: ModbusAddress | None = None


class HubConfig(_Section):
    """The whole hall configuration file."""

    hub: HubSection
    mqtt: MqttSection = MqttSection()
    console: ConsoleSection = ConsoleSection()
    city: CitySection | None = None
    models_dir: Path | None = None
    rule_files: list[Path] = []
    calendar_file: Path | None = Field(
        default=None, description="hall calendar: hours, next year's holiday table, closures"
    )
    devices: list[DeviceSpec] = []
    alerts: AlertsSection = AlertsSection()
    operations: OperationsSection = OperationsSection()
    ratings: RatingsSection = RatingsSection()
    tickets: TicketsSection = TicketsSection()
    _source: Path | None = PrivateAttr(default=None)
    _lines: dict[Location, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _device_ids_are_unique(self) -> HubConfig:
        seen: set[str] = set()
        for device in self.devices:
            if device.id in seen:
                raise ValueError(f"device id {device.id!r} appears twice")
            seen.add(device.id)
        return self

    def problem(self, location: Location, message: str) -> ConfigError:
        """A `ConfigError` pointing at `location` in the file this came from."""
        line = line_of(self._lines, location)
        where = f"line {line}: " if line is not None else ""
        field = ".".join(str(part) for part in location)
        return ConfigError(str(self._source or "configuration"), [f"{where}{field}: {message}"])

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"hallhub-{self.hub.id}"

    def resolve_paths(self, base: Path) -> HubConfig:
        """Make every relative path absolute against `base` (the config's folder)."""

        def under(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        self.hub.state_dir = under(self.hub.state_dir)
        if self.mqtt.password_file is not None:
            self.mqtt.password_file = under(self.mqtt.password_file)
        if self.console.token_file is not None:
            self.console.token_file = under(self.console.token_file)
        if self.city is not None:
            self.city.resolve_paths(under)
        if self.models_dir is not None:
            self.models_dir = under(self.models_dir)
        self.rule_files = [under(path) for path in self.rule_files]
        if self.calendar_file is not None:
            self.calendar_file = under(self.calendar_file)
        return self


def load_config(path: Path) -> HubConfig:
    """Load and validate a hall configuration file."""
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(str(path), ["the file is empty"])
    try:
        config = HubConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(str(path), describe_errors(exc, lines)) from exc
    config._source = path
    config._lines = lines
    return config.resolve_paths(path.parent.resolve())
