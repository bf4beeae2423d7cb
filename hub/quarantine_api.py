"""Console API route for a person to resolve an event the city refused.

A quarantined alarm, rating or ticket stays on the hub with an open alert until
someone looks at it and records what was done (re-entered at the city by hand,
traced to a device fault, ...). Resolving closes the quarantine entry, clears
its alert and goes to the audit trail; the event itself is never changed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.alerts.api import actor, json_body
from hub.events import Lane
from sync.errors import QuarantineError
from sync.poison import resolve_quarantined

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)

RESOLUTION_LIMIT = 500


def quarantine_routes(service: HubService) -> list[Route]:
    """The route this module adds to the console."""

    async def resolve(request: Request) -> Response:
        body = await json_body(request)
        by = actor(body, "console")
        resolution = str(body.get("resolution") or "").strip()[:RESOLUTION_LIMIT]
        if not resolution:
            return JSONResponse({"error": "say what was done: 'resolution'"}, status_code=400)
        try:
            lane = Lane(request.path_params["lane"])
        except ValueError:
            return JSONResponse({"error": "unknown lane"}, status_code=404)
        seq = int(request.path_params["seq"])
        now = service.clock.wall()

        try:
            entry = await service.journal.write(
                lambda conn: resolve_quarantined(conn, lane, seq, by, resolution, now)
            )
        except QuarantineError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

        await service.alerts.clear_condition(
            str(entry["device_id"]), f"sync_quarantine:{lane.value}:{seq}", by
        )
        await service.audit.record(
            by, "sync.quarantine.resolve", f"{lane.value}/{seq}", {"resolution": resolution}
        )
        logger.info("quarantined %s seq %d resolved by %s", lane.value, seq, by)
        return JSONResponse({"quarantine": entry})

    return [
        Route("/api/sync/quarantine/{lane}/{seq:int}/resolve", resolve, methods=["POST"]),
    ]
