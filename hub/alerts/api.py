"""Console API routes for crews' alerts: resolve, deliveries, silences.

Mounted by hub.console, behind its token check: reads take the token from the
header or the console cookie, changes only from the ``Authorization`` header.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.alerts.errors import AlertLatchedError, AlertNotFoundError, SilenceError
from hub.alerts.silences import active_silences
from hub.alerts.store import list_deliveries

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)

NAME_LIMIT = 64


def alert_routes(service: HubService) -> list[Route]:
    """The routes this package adds to the console."""

    async def resolve(request: Request) -> Response:
        body = await json_body(request)
        by = actor(body, "console")
        try:
            alert = await service.alerts.resolve(int(request.path_params["alert_id"]), by)
        except AlertLatchedError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except AlertNotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"alert": alert})

    async def deliveries(request: Request) -> Response:
        with service.journal.reading() as conn:
            rows = list_deliveries(conn, int(request.path_params["alert_id"]))
        return JSONResponse({"deliveries": rows})

    async def silences(_request: Request) -> Response:
        with service.journal.reading() as conn:
            rows = active_silences(conn, service.clock.wall())
        return JSONResponse({"silences": rows})

    async def add_silence(request: Request) -> Response:
        body = await json_body(request)
        try:
            silence = await service.alerts.silence(
                str(body.get("scope", "")),
                str(body.get("value", ""))[:NAME_LIMIT],
                _seconds(body.get("duration")),
                str(body.get("reason", ""))[:200],
                actor(body, "console"),
            )
        except SilenceError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"silence": silence}, status_code=201)

    async def end_silence(request: Request) -> Response:
        try:
            silence = await service.alerts.end_silence(int(request.path_params["silence_id"]))
        except SilenceError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"silence": silence})

    return [
        Route("/api/alerts/{alert_id:int}/resolve", resolve, methods=["POST"]),
        Route("/api/alerts/{alert_id:int}/deliveries", deliveries),
        Route("/api/silences", silences),
        Route("/api/silences", add_silence, methods=["POST"]),
        Route("/api/silences/{silence_id:int}/end", end_silence, methods=["POST"]),
    ]


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def actor(body: dict[str, Any], default: str) -> str:
    """Who is acting, as the caller named themselves (trimmed)."""
    return str(body.get("by") or default)[:NAME_LIMIT]


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SilenceError("duration must be a number of seconds")
    return float(value)
