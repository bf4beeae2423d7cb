"""The console's operations routes: readiness and disk figures (both need the token)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.ops.readiness import check_readiness, readiness_body

if TYPE_CHECKING:
    from hub.service import HubService


def operations_routes(service: HubService) -> list[Route]:
    """``/readyz`` and ``/api/operations`` for one running hub."""

    async def readyz(_request: Request) -> Response:
        body = readiness_body(await check_readiness(service))
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    async def operations(_request: Request) -> Response:
        disk = service.retention.disk_figures()
        return JSONResponse({"disk": disk, "journal_epoch": service.journal.epoch})

    return [Route("/readyz", readyz), Route("/api/operations", operations)]
