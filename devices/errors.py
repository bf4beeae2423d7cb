"""Errors raised by the device drivers and simulators.

    HallhubError (hub.errors)
    └── DeviceError                a device, its model or its link misbehaved
        ├── UnknownDeviceError     no device with this id, commissioned or pending
        ├── CommissioningError     a commission or retire request that cannot be done
        ├── CommandError           a command the device cannot be sent (unknown, bad args)
        ├── RegisterMapError       a model's register map cannot be read as written
        ├── RegisterDecodeError    register words do not decode as the model says
        ├── ModbusReadError        one Modbus read brought back no usable reply
        │   ├── ModbusExceptionReply  the device answered with an exception code
        │   ├── ModbusTimeout         no reply within the model's timeout
        │   ├── ModbusLinkError       the TCP connection or serial port failed or broke
        │   └── ModbusBadReply        bytes came back that answer another request
        ├── ModbusLineError        one request on a Modbus line (port or gateway) failed
        │   ├── LineUnavailable       the port or connection cannot be opened, or broke
        │   ├── LineTimeout           no reply for this request within the timeout
        │   └── LineGarbled           a CRC error, garbage, or a reply for another unit
        ├── ModbusWriteError       a command's write was refused or did not read back
        └── SimulatorError         a simulated device was asked to do something invalid

Each carries the device id and, where there is one, the register, so a log line or
a console message points hall IT at the exact value that went wrong.
"""

from __future__ import annotations

from hub.errors import HallhubError

# Names of the standard Modbus exception codes (Modbus Application Protocol v1.1b3, §7).
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class DeviceError(HallhubError):
    """Something about one device went wrong; `device_id` says which."""

    def __init__(self, device_id: str, reason: str) -> None:
        self.device_id = device_id
        self.reason = reason
        where = f"device {device_id}: " if device_id else ""
        super().__init__(f"{where}{reason}")


class UnknownDeviceError(DeviceError):
    """No device with this id is in the registry, nor waiting to be commissioned."""


class CommissioningError(DeviceError):
    """Hall IT asked for a change of state the device cannot make (e.g. no model)."""


class CommandError(DeviceError):
    """A command refused before sending: unknown command, bad arguments, retired device."""

    def __init__(self, device_id: str, command: str, reason: str) -> None:
        self.command = command
        super().__init__(device_id, f"command {command}: {reason}")


class RegisterMapError(DeviceError):
    """A register map that cannot be polled as written (e.g. a float in a coil)."""

    def __init__(self, device_id: str, register: str, reason: str) -> None:
        self.register = register
        super().__init__(device_id, f"register {register}: {reason}")


class RegisterDecodeError(DeviceError):
    """Register words that cannot be turned into the value the model describes."""

    def __init__(self, device_id: str, register: str, reason: str) -> None:
        self.register = register
        super().__init__(device_id, f"register {register}: {reason}")


class ModbusReadError(DeviceError):
    """A read of `count` values at `table` `address` brought back nothing usable."""

    def __init__(self, device_id: str, table: str, address: int, count: int, reason: str) -> None:
        self.table = table
        self.address = address
        self.count = count
        super().__init__(device_id, f"read {table} {address}+{count}: {reason}")


class ModbusExceptionReply(ModbusReadError):
    """The device refused the read with a Modbus exception code."""

    def __init__(self, device_id: str, table: str, address: int, count: int, code: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(device_id, table, address, count, f"exception {code} ({name})")


class ModbusTimeout(ModbusReadError):
    """No reply arrived within the model's timeout."""


class ModbusLinkError(ModbusReadError):
    """The TCP connection to the device could not be made or broke mid-read."""


class ModbusBadReply(ModbusReadError):
    """A reply that fails its CRC or answers another unit or request."""


class ModbusLineError(DeviceError):
    """A request on the Modbus line named `device_id` (a port or gateway) failed."""


class LineUnavailable(ModbusLineError):
    """The serial port or TCP connection cannot be opened, or broke mid-request."""


class LineTimeout(ModbusLineError):
    """No valid reply arrived within the request's timeout."""


class LineGarbled(ModbusLineError):
    """Bytes that are no valid reply to the request: the line was resynchronised."""


class ModbusWriteError(DeviceError):
    """A command's write to `register` failed or the value read back differs."""

    def __init__(self, device_id: str, register: str, reason: str) -> None:
        self.register = register
        super().__init__(device_id, f"write {register}: {reason}")


class SimulatorError(DeviceError):
    """A simulated device was asked to send something its model does not allow."""
