"""Console API routes for ratings, mounted by hub.console behind its token check.

Reads take the token from the header or the console cookie; changes (a rating from
another channel, a finished case, a task step) only from the ``Authorization``
header. A citizen's phone or ID number in a body is turned into a lookup key at
once and never stored, logged or echoed.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.alerts.api import actor, json_body
from hub.ratings import store, views
from hub.ratings.errors import RatingRejected, TaskNotFoundError, TaskStateError
from hub.ratings.privacy import IDENTIFIER_KINDS
from hub.ratings.store import RatingInput

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)

TEXT_LIMIT = 500
FIELD_LIMIT = 64
TAG_LIMIT = 10


def rating_routes(service: HubService) -> list[Route]:
    """The routes this package adds to the console."""

    async def today(_request: Request) -> Response:
        with service.journal.reading() as conn:
            return JSONResponse(views.today(conn, service.calendar, service.clock.wall()))

    async def tasks(request: Request) -> Response:
        open_only = request.query_params.get("open") == "1"
        with service.journal.reading() as conn:
            body = views.task_list(conn, service.calendar, service.clock.wall(), open_only)
        return JSONResponse(body)

    async def unrated(request: Request) -> Response:
        every = request.query_params.get("all") == "1"
        with service.journal.reading() as conn:
            body = views.unrated(conn, service.ratings.settings, service.clock.wall(), every)
        return JSONResponse(body)

    async def rejects(_request: Request) -> Response:
        with service.journal.reading() as conn:
            return JSONResponse({"rejects": store.rejects(conn)})

    async def add_rating(request: Request) -> Response:
        body = await json_body(request)
        rating = _rating_from(body, service)
        try:
            if _tags(body) is None:
                detail = f"tags must be a list of at most {TAG_LIMIT} strings"
                raise await service.ratings.refuse(rating, "bad_tags", detail)
            recorded = await service.ratings.record(rating)
        except RatingRejected as exc:
            return JSONResponse({"error": exc.reason, "detail": exc.detail}, status_code=422)
        return JSONResponse({"rating": recorded.to_json()}, status_code=201)

    async def add_case(request: Request) -> Response:
        body = await json_body(request)
        try:
            case = await service.ratings.record_case(
                _text(body, "window") or "",
                _text(body, "staff_id"),
                _text(body, "case_no"),
                _text(body, "ticket"),
            )
        except RatingRejected as exc:
            return JSONResponse({"error": exc.reason, "detail": exc.detail}, status_code=422)
        return JSONResponse({"case": case}, status_code=201)

    async def task_step(request: Request) -> Response:
        body = await json_body(request)
        task_id = int(request.path_params["task_id"])
        note = str(body.get("note") or "")[:TEXT_LIMIT]
        step = (
            service.ratings.tasks.record_contact
            if request.url.path.endswith("/contact")
            else service.ratings.tasks.record_fix
        )
        try:
            task = await step(task_id, actor(body, "console"), note)
        except TaskNotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except TaskStateError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"task": task})

    return [
        Route("/api/ratings", add_rating, methods=["POST"]),
        Route("/api/ratings/today", today),
        Route("/api/ratings/tasks", tasks),
        Route("/api/ratings/tasks/{task_id:int}/contact", task_step, methods=["POST"]),
        Route("/api/ratings/tasks/{task_id:int}/fix", task_step, methods=["POST"]),
        Route("/api/ratings/unrated", unrated),
        Route("/api/ratings/rejects", rejects),
        Route("/api/ratings/cases", add_case, methods=["POST"]),
    ]


def _rating_from(body: dict[str, Any], service: HubService) -> RatingInput:
    """A rating from another channel, as given; the desk decides whether it stands."""
    ref = _text(body, "ref") or uuid.uuid4().hex
    channel = _text(body, "channel") or ""
    return RatingInput(
        window=_text(body, "window") or "",
        level=_text(body, "level") or "",
        channel=channel,
        source=f"{channel}:{ref}",
        rated_at=service.clock.wall(),
        staff_id=_text(body, "staff_id"),
        ticket=_text(body, "ticket"),
        case_no=_text(body, "case_no"),
        tags=_tags(body) or (),
        text=(str(body["text"])[:TEXT_LIMIT] if body.get("text") else None),
        follow_up=body.get("follow_up") is True,
        citizen_key=_citizen_key(body, service),
    )


def _tags(body: dict[str, Any]) -> tuple[str, ...] | None:
    """The tags as strings, or None when they are not a short list."""
    tags = body.get("tags") or []
    if not isinstance(tags, list) or len(tags) > TAG_LIMIT:
        return None
    return tuple(str(tag)[:FIELD_LIMIT] for tag in tags)


def _citizen_key(body: dict[str, Any], service: HubService) -> str | None:
    """The lookup key of the first identifier given (phone before ID number)."""
    for kind in IDENTIFIER_KINDS:
        value = body.get(kind)
        if value:
            return service.ratings.citizens.lookup_key(kind, str(value))
    return None


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    return str(value)[:FIELD_LIMIT]
