"""The console for hall IT: a web page and a JSON API, served by the hub itself.

Who may call what is decided in hub.console_access (sessions with CSRF tokens,
the API token, roles, audit); the web pages live in hub.console_web. Everything
the pages need is served from here: no CDN, no internet.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from devices.api import device_routes
from hub import metrics
from hub.alerts import AlertNotFoundError, list_alerts
from hub.alerts.api import alert_routes
from hub.alerts.mobile import mobile_routes
from hub.console_access import ConsoleAccess
from hub.console_api import console_api_routes
from hub.console_web import console_web_routes
from hub.ops.routes import operations_routes
from hub.quarantine_api import quarantine_routes
from hub.ratings.api import rating_routes
from hub.tickets.api import queue_routes
from sync.outbox import pending_lags
from sync.poison import set_aside_summary

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)


def create_app(service: HubService) -> Starlette:
    """The console's ASGI application for one running hub."""

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def alerts(request: Request) -> Response:
        active_only = request.query_params.get("active") == "1"
        with service.journal.reading() as conn:
            return JSONResponse({"alerts": list_alerts(conn, active_only)})

    async def acknowledge(request: Request) -> Response:
        body = await _json_body(request)
        by = str(body.get("by") or "console")[:64]
        try:
            alert = await service.alerts.acknowledge(int(request.path_params["alert_id"]), by)
        except (AlertNotFoundError, OverflowError) as exc:
            return JSONResponse({"error": f"no open alert: {exc}"}, status_code=404)
        return JSONResponse({"alert": alert})

    async def sync(_request: Request) -> Response:
        lanes = service.uplink.status() if service.uplink is not None else {}
        with service.journal.reading() as conn:
            set_aside = set_aside_summary(conn)
            lags = pending_lags(conn, service.clock.wall())
        link = service.uplink.link_status() if service.uplink is not None else None
        return JSONResponse(
            {
                "configured": service.uplink is not None,
                "lanes": lanes,
                "lag_seconds": lags,
                "link": link,
                "set_aside": set_aside,
            }
        )

    async def rules(_request: Request) -> Response:
        return JSONResponse(service.rules.describe())

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def page(_request: Request) -> Response:
        with service.journal.reading() as conn:
            open_alerts = list_alerts(conn, active_only=True)
        return HTMLResponse(render_page(service, open_alerts))

    routes = [
        Route("/", page),
        Route("/healthz", healthz),
        Route("/metrics", prometheus),
        *device_routes(service),
        Route("/api/alerts", alerts),
        Route("/api/alerts/{alert_id:int}/acknowledge", acknowledge, methods=["POST"]),
        Route("/api/sync", sync),
        *alert_routes(service),
        *mobile_routes(service),
        *quarantine_routes(service),
        Route("/api/rules", rules),
        *operations_routes(service),
        *rating_routes(service),
        *console_web_routes(service),
        *console_api_routes(service),
        *queue_routes(service),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(ConsoleAccess, service=service)
    return app


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def render_page(service: HubService, open_alerts: list[dict[str, Any]]) -> str:
    """The overview page: open alerts first, then every device."""
    esc = html.escape
    alert_rows = (
        "".join(
            f"<tr class='sev-{esc(a['severity'])}'><td>{a['alert_id']}</td>"
            f"<td>{esc(a['severity'])}</td><td>{esc(a['team'])}</td><td>{esc(a['message'])}</td>"
            f"<td>{esc(a['state'])}</td><td>{a['count']}</td></tr>"
            for a in open_alerts
        )
        or "<tr><td colspan='6'>No open alerts / 无未处理告警</td></tr>"
    )
    device_rows = "".join(
        f"<tr><td>{esc(d.device_id)}</td><td>{esc(d.kind)}</td><td>{esc(d.spec.zone)}</td>"
        f"<td class='{'on' if d.online else 'off'}'>{'online' if d.online else 'offline'}</td>"
        f"<td>{esc(_values(d.last_values))}</td></tr>"
        for d in service.registry.all()
    )
    hub_id = esc(service.config.hub.id)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>hallhub · {hub_id}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5rem; color: #1b1b1b; }}
table {{ border-collapse: collapse; margin-bottom: 2rem; }}
th, td {{ border: 1px solid #999; padding: .3rem .6rem; text-align: left; }}
th {{ background: #e8e8e8; }}
.on {{ color: #0a6b0a; }} .off {{ color: #a00; font-weight: bold; }}
.sev-urgent {{ background: #fde2e2; }}
</style></head><body>
<h1>hallhub · {hub_id}</h1>
<h2>Open alerts / 告警</h2>
<table><thead><tr><th>#</th><th>Severity</th><th>Team</th><th>Alert</th><th>State</th>
<th>Count</th></tr></thead><tbody>{alert_rows}</tbody></table>
<h2>Devices / 设备</h2>
<table><thead><tr><th>Device</th><th>Kind</th><th>Zone</th><th>State</th><th>Last values</th>
</tr></thead><tbody>{device_rows}</tbody></table>
</body></html>"""


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(values.items()))
