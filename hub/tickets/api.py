"""Console API routes for the queue: the live view, statistics and window actions.

Mounted by hub.console behind its token check, so every route needs the API token;
actions take it only from the ``Authorization`` header. Each action is written to
the audit trail with the actor "api" (the token names no person).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.alerts.api import json_body
from hub.tickets.errors import (
    TicketError,
    TicketNotFoundError,
    TicketStateError,
    UnknownWindowError,
    WindowStateError,
)

if TYPE_CHECKING:
    from hub.service import HubService

ACTOR = "api"
WINDOW_STATES = {"open": "open", "pause": "paused", "close": "closed"}
Action = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any] | None]]


def queue_routes(service: HubService) -> list[Route]:
    """The routes this package adds to the console."""

    async def queue(_request: Request) -> Response:
        return JSONResponse(service.tickets.view())

    async def stats(_request: Request) -> Response:
        return JSONResponse(service.tickets.statistics())

    actions: dict[str, Action] = {
        "call": lambda window, _body: service.tickets.call_next(window, ACTOR),
        "recall": lambda window, _body: service.tickets.recall(window, ACTOR),
        "skip": lambda window, _body: service.tickets.skip(window, ACTOR),
        "transfer": lambda window, body: service.tickets.transfer(
            window, ACTOR, to_category=_text(body, "category"), to_window=_text(body, "window")
        ),
        **{verb: _state_action(service, state) for verb, state in WINDOW_STATES.items()},
    }

    async def window_action(request: Request) -> Response:
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": "unknown window action"}, status_code=404)
        body = await json_body(request)
        return await _answer(lambda: action(request.path_params["window"], body))

    async def requeue(request: Request) -> Response:
        return await _answer(lambda: service.tickets.requeue(request.path_params["ticket"], ACTOR))

    async def appointment(request: Request) -> Response:
        body = await json_body(request)
        try:
            slot = (float(body["slot_start"]), float(body["slot_end"]))
            code, category = str(body["code"])[:64], str(body["category"])
        except (KeyError, TypeError, ValueError):
            return JSONResponse(
                {"error": "give code, category, slot_start and slot_end"}, status_code=400
            )

        async def book() -> dict[str, Any]:
            await service.tickets.book_appointment(code, category, *slot, ACTOR)
            return {"code": code, "category": category}

        return await _answer(book)

    return [
        Route("/api/queue", queue),
        Route("/api/queue/stats", stats),
        Route("/api/queue/windows/{window}/{action}", window_action, methods=["POST"]),
        Route("/api/queue/tickets/{ticket}/requeue", requeue, methods=["POST"]),
        Route("/api/queue/appointments", appointment, methods=["POST"]),
    ]


def _state_action(service: HubService, state: str) -> Action:
    async def change(window: str, _body: dict[str, Any]) -> dict[str, Any]:
        return await service.tickets.set_window_state(window, state, ACTOR)

    return change


async def _answer(action: Callable[[], Awaitable[dict[str, Any] | None]]) -> Response:
    """Run `action`; a refusal becomes 404 (no such thing), 409 (wrong state) or 400."""
    try:
        result = await action()
    except (UnknownWindowError, TicketNotFoundError) as exc:
        return JSONResponse({"error": exc.detail, "reason": exc.reason}, status_code=404)
    except (WindowStateError, TicketStateError) as exc:
        return JSONResponse({"error": exc.detail, "reason": exc.reason}, status_code=409)
    except TicketError as exc:
        return JSONResponse({"error": exc.detail, "reason": exc.reason}, status_code=400)
    return JSONResponse({"result": result})


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return None if value is None else str(value)[:16]
