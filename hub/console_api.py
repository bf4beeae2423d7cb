"""Console API routes behind the web console: live stream, device history, rules, audit.

Mounted by hub.console behind hub.console_access, which has already checked the
caller, their role and the CSRF token of every change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from devices.registry import DeviceState
from hub.alerts.api import json_body
from hub.errors import ConfigError
from hub.live import LiveFeedClosedError
from hub.sessions import LANGUAGES
from rules import switches as rule_switches
from rules.errors import ReplayError
from rules.layers import hall_layers, load_layers

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 500
RULES_TEXT_LIMIT = 64_000


def console_api_routes(service: HubService) -> list[Route]:
    """The routes this module adds to the console."""

    async def live_stream(_request: Request) -> Response:
        try:
            frames = service.live.stream()
            first = await anext(frames)
        except LiveFeedClosedError:
            return JSONResponse({"error": "live channel closed"}, status_code=503)

        async def resumed() -> Any:
            yield first
            async for frame in frames:
                yield frame

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(resumed(), media_type="text/event-stream", headers=headers)

    async def session(request: Request) -> Response:
        caller = request.state.caller
        found = caller.session
        return JSONResponse(
            {
                "user": caller.actor,
                "role": caller.role.value,
                "language": found.language if found else "zh",
                "csrf": found.csrf if found else None,
            }
        )

    async def language(request: Request) -> Response:
        body = await json_body(request)
        chosen = str(body.get("language", ""))
        found = request.state.caller.session
        if chosen not in LANGUAGES or found is None:
            return JSONResponse({"error": f"language must be one of {LANGUAGES}"}, 400)
        found.language = chosen
        return JSONResponse({"language": chosen})

    async def history(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        if service.registry.get(device_id) is None:
            return JSONResponse({"error": f"no device {device_id!r}"}, status_code=404)
        with service.journal.reading() as conn:
            rows = conn.execute(
                "SELECT received_at, type, data FROM events WHERE device_id = ?"
                " ORDER BY received_at DESC LIMIT ?",
                (device_id, HISTORY_LIMIT),
            ).fetchall()
        points = [{"at": at, "type": kind, "values": json.loads(data)} for at, kind, data in rows]
        return JSONResponse({"device_id": device_id, "points": points[::-1]})

    async def settings(request: Request) -> Response:
        device = service.registry.get(request.path_params["device_id"])
        if device is None:
            return JSONResponse({"error": "no such device"}, status_code=404)
        return JSONResponse({"settings": device_settings(device)})

    async def audit(request: Request) -> Response:
        try:
            since = float(request.query_params.get("since") or 0)
        except ValueError:
            return JSONResponse({"error": "since must be a Unix time in seconds"}, 400)
        rows = service.audit.entries(since=since)
        return JSONResponse({"entries": [row.__dict__ for row in rows]})

    async def switch_rule(request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        enabled = request.url.path.endswith("/enable")
        known = {rule["id"] for rule in service.rules.describe()["rules"]}
        if rule_id not in known:
            return JSONResponse({"error": f"no rule {rule_id!r}"}, status_code=404)
        rule_switches.set_enabled(service.config.hub.state_dir, rule_id, enabled)
        service.rules.reload_if_changed()
        return JSONResponse({"rule": rule_id, "enabled": enabled})

    async def validate(request: Request) -> Response:
        text = await _rules_text(request)
        if isinstance(text, Response):
            return text
        result = await asyncio.to_thread(_validate_candidate, service, text)
        return JSONResponse(result, status_code=200 if result["valid"] else 422)

    async def preview(request: Request) -> Response:
        text = await _rules_text(request)
        if isinstance(text, Response):
            return text
        body = await json_body(request)
        try:
            report = await asyncio.to_thread(
                _preview_candidate, service, text, str(body.get("from")), str(body.get("to"))
            )
        except ConfigError as exc:
            return JSONResponse({"valid": False, "errors": exc.problems}, status_code=422)
        except (ReplayError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(report)

    return [
        Route("/api/events/stream", live_stream),
        Route("/api/session", session),
        Route("/api/session/language", language, methods=["POST"]),
        Route("/api/devices/{device_id}/history", history),
        Route("/api/devices/{device_id}/settings", settings),
        Route("/api/audit", audit),
        Route("/api/rules/{rule_id}/enable", switch_rule, methods=["POST"]),
        Route("/api/rules/{rule_id}/disable", switch_rule, methods=["POST"]),
        Route("/api/rules/validate", validate, methods=["POST"]),
        Route("/api/rules/preview", preview, methods=["POST"]),
    ]


def device_settings(device: DeviceState) -> list[dict[str, Any]]:
    """Each setting of a device with where it came from: hall configuration or model file."""
    found = [
        {"name": name, "value": value, "source": "hall configuration"}
        for name, value in device.spec.model_dump(mode="json").items()
        if value is not None
    ]
    model_source = f"firmware_configs: {device.model.model}"
    for name, value in device.model.model_dump(mode="json", exclude_none=True).items():
        if name not in ("mqtt", "modbus"):
            found.append({"name": f"model.{name}", "value": value, "source": model_source})
    return found


async def _rules_text(request: Request) -> str | Response:
    body = await json_body(request)
    text = body.get("rules")
    if not isinstance(text, str) or not text.strip():
        return JSONResponse({"error": "give the candidate rule file as 'rules'"}, 400)
    if len(text) > RULES_TEXT_LIMIT:
        return JSONResponse({"error": f"rule file over {RULES_TEXT_LIMIT} characters"}, 413)
    return text


def _candidate_layers(service: HubService, folder: Path, text: str) -> list[tuple[str, Path]]:
    (folder / "candidate.yaml").write_text(text, encoding="utf-8")
    layers = hall_layers(service.config.hub.state_dir, service.config.rule_files)
    return [*layers, ("candidate", folder)]


def _validate_candidate(service: HubService, text: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hallhub-rules-") as folder:
        try:
            rule_set = load_layers(_candidate_layers(service, Path(folder), text))
        except ConfigError as exc:
            return {"valid": False, "errors": exc.problems}
    return {"valid": True, "rules": [rule.id for rule in rule_set.rules]}


def _preview_candidate(service: HubService, text: str, start: str, end: str) -> dict[str, Any]:
    from rules.replay import parse_moment, replay_preview

    calendar = service.rules.calendar
    layers = hall_layers(service.config.hub.state_dir, service.config.rule_files)
    with tempfile.TemporaryDirectory(prefix="hallhub-rules-") as folder:
        candidate = load_layers(_candidate_layers(service, Path(folder), text)).rules
    report = replay_preview(
        service.journal.path,
        service.config.hub.id,
        parse_moment(start, calendar, end_of_day=False),
        parse_moment(end, calendar, end_of_day=True),
        load_layers(layers).rules,
        candidate,
        calendar,
        {device.id: device.zone for device in service.config.devices},
    )
    return report.to_json()
