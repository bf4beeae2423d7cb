"""Console API routes for devices: list, show, commission, retire, commands.

Mounted by hub.console behind its token check; changes take the token only from
the ``Authorization`` header. Every change is recorded in the audit trail.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devices.commissioning import Placement
from devices.errors import CommandError, CommissioningError, UnknownDeviceError
from hub.alerts.api import actor, json_body

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)


def device_routes(service: HubService) -> list[Route]:
    """The routes this module adds to the console."""

    async def listing(request: Request) -> Response:
        return JSONResponse({"devices": list_devices(service, request.query_params)})

    async def show(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        found = describe_device(service, device_id)
        if found is None:
            return _error(404, f"no device {device_id!r}")
        return JSONResponse({"device": found})

    async def commission(request: Request) -> Response:
        body = await json_body(request)
        try:
            placement = _placement(body)
            device = await service.commissioning.commission(
                request.path_params["device_id"], placement, actor(body, "console")
            )
        except UnknownDeviceError as exc:
            return _error(404, str(exc))
        except (CommissioningError, ValueError) as exc:
            return _error(409, str(exc))
        return JSONResponse({"device": device.to_json()})

    async def retire(request: Request) -> Response:
        body = await json_body(request)
        try:
            device = await service.commissioning.retire(
                request.path_params["device_id"], actor(body, "console")
            )
        except UnknownDeviceError as exc:
            return _error(404, str(exc))
        return JSONResponse({"device": device.to_json()})

    async def send_command(request: Request) -> Response:
        body = await json_body(request)
        device_id = request.path_params["device_id"]
        args = body.get("args") or {}
        by = actor(body, "console")
        if not isinstance(args, dict):
            return _error(400, "args must be an object")
        try:
            record = await service.device_router.send(
                device_id, str(body.get("command", "")), args, by
            )
        except UnknownDeviceError as exc:
            return _error(404, str(exc))
        except CommandError as exc:
            return _error(400, str(exc))
        await service.audit.record(by, "device.command", device_id, {"command": record["command"]})
        return JSONResponse({"command": record}, status_code=202)

    async def commands(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        return JSONResponse({"commands": service.device_commands.for_device(device_id)})

    async def command(request: Request) -> Response:
        record = service.device_commands.record(request.path_params["request_id"])
        if record is None or record["device_id"] != request.path_params["device_id"]:
            return _error(404, "no such command")
        return JSONResponse({"command": record})

    prefix = "/api/devices/{device_id}"
    return [
        Route("/api/devices", listing),
        Route(prefix, show),
        Route(f"{prefix}/commission", commission, methods=["POST"]),
        Route(f"{prefix}/retire", retire, methods=["POST"]),
        Route(f"{prefix}/commands", send_command, methods=["POST"]),
        Route(f"{prefix}/commands", commands),
        Route(prefix + "/commands/{request_id}", command),
    ]


def list_devices(service: HubService, query: Any) -> list[dict[str, Any]]:
    """Every device, pending ones included; ``?state=`` and ``?drifted=1`` filter."""
    rows = [device.to_json() for device in service.registry.all()]
    rows += [pending.to_json() for pending in service.commissioning.pending()]
    state = query.get("state")
    if state:
        rows = [row for row in rows if row["state"] == state]
    if query.get("drifted") == "1":
        rows = [row for row in rows if row.get("drifted")]
    return rows


def describe_device(service: HubService, device_id: str) -> dict[str, Any] | None:
    """One device with its recent commands, or None if the hub has never heard of it."""
    device = service.registry.get(device_id)
    if device is not None:
        return {**device.to_json(), "commands": service.device_commands.for_device(device_id)}
    pending = service.commissioning.find_pending(device_id)
    return None if pending is None else pending.to_json()


def _placement(body: dict[str, Any]) -> Placement:
    floor = body.get("floor")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int)):
        raise ValueError("floor must be a whole number")
    texts = {name: body.get(name) for name in ("model", "zone", "window")}
    for name, value in texts.items():
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise ValueError(f"{name} must be text of at most 64 characters")
    return Placement(texts["model"], texts["zone"], floor, texts["window"])


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
