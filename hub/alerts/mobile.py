"""A small page for crews' phones: open alerts, acknowledge and resolve with one tap.

Server-rendered, no scripts and nothing fetched from elsewhere. A phone signs in once
by opening ``/m/alerts?token=<token>`` (the console's cookie). Its buttons POST with
that cookie, so each form carries a CSRF token derived from the API token; the
console's token check accepts a cookie-only POST under ``/m/`` only with it.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from hub.alerts.errors import AlertError
from hub.alerts.store import list_alerts

if TYPE_CHECKING:
    from hub.service import HubService

PAGE = "/m/alerts"
NAME_LIMIT = 64


def csrf_token(api_token: str) -> str:
    """The token a mobile form must carry; only someone who saw the page has it."""
    return hmac.new(api_token.encode(), b"hallhub mobile form", hashlib.sha256).hexdigest()


def csrf_matches(api_token: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(csrf_token(api_token), offered)


def mobile_routes(service: HubService) -> list[Route]:
    """The page and its two form targets."""

    async def page(_request: Request) -> Response:
        with service.journal.reading() as conn:
            alerts = list_alerts(conn, active_only=True)
        return HTMLResponse(render(alerts, csrf_token(service.token)))

    async def act(request: Request) -> Response:
        by = _form_name(await request.body())
        alert_id = int(request.path_params["alert_id"])
        action = request.path_params["action"]
        if action not in ("ack", "resolve"):
            return HTMLResponse(_notice(f"unknown action {action!r}"), status_code=404)
        try:
            if action == "ack":
                await service.alerts.acknowledge(alert_id, f"mobile:{by}")
            else:
                await service.alerts.resolve(alert_id, f"mobile:{by}")
        except AlertError as exc:
            return HTMLResponse(_notice(str(exc)), status_code=409)
        return RedirectResponse(PAGE, status_code=303)

    return [
        Route(PAGE, page),
        Route(PAGE + "/{alert_id:int}/{action:str}", act, methods=["POST"]),
    ]


def _form_name(body: bytes) -> str:
    """The name typed into the form (urlencoded); parsed here to need no extra library."""
    fields = parse_qs(body[:4096].decode("utf-8", "replace"))
    return (fields.get("by", [""])[0].strip()[:NAME_LIMIT]) or "phone"


def render(alerts: list[dict[str, Any]], csrf: str) -> str:
    """The page: one card per active alert, most urgent colours first."""
    cards = "".join(_card(alert, csrf) for alert in alerts) or "<p>No open alerts / 无告警</p>"
    return _frame(f"<h1>Alerts / 告警</h1>{cards}")


def _card(alert: dict[str, Any], csrf: str) -> str:
    esc = html.escape
    alert_id = alert["alert_id"]
    buttons = ""
    if alert["state"] == "open":
        buttons += _button(alert_id, "ack", "Acknowledge / 确认", csrf)
    if not (alert["latched"] and alert["condition_active"]):
        buttons += _button(alert_id, "resolve", "Resolve / 解决", csrf)
    return (
        f"<section class='card sev-{esc(alert['severity'])}'>"
        f"<h2>#{alert_id} {esc(alert['message'])}</h2>"
        f"<p>{esc(alert['severity'])} · {esc(alert['team'])} · {esc(alert['state'])}"
        f" · ×{alert['count']}</p>{buttons}</section>"
    )


def _button(alert_id: int, action: str, label: str, csrf: str) -> str:
    return (
        f"<form method='post' action='{PAGE}/{alert_id}/{action}?csrf={csrf}'>"
        "<input name='by' placeholder='name / 姓名' maxlength='64'>"
        f"<button>{label}</button></form>"
    )


def _notice(text: str) -> str:
    return _frame(f"<p>{html.escape(text)}</p><p><a href='{PAGE}'>Back / 返回</a></p>")


def _frame(body: str) -> str:
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="15">
<title>hallhub alerts</title>
<style>
body {{ font-family: sans-serif; margin: .8rem; font-size: 1.1rem; }}
.card {{ border: 1px solid #999; border-radius: .4rem; padding: .5rem; margin: .6rem 0; }}
.sev-urgent {{ background: #fde2e2; }} .sev-high {{ background: #fff1d6; }}
form {{ display: inline-block; margin: .2rem; }}
button {{ font-size: 1.1rem; padding: .5rem .8rem; }}
input {{ font-size: 1rem; width: 7rem; }}
</style></head><body>{body}</body></html>"""
