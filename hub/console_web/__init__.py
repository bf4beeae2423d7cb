"""The web console for hall IT: sign-in, the pages, and their script and style.

Everything is served by the hub from this package (no CDN, no internet): the
pages from ``pages.py``, labels from ``messages/<language>.json``, the script and
style from ``static/``.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from hub.console_web.pages import HTML_LANGUAGE, PAGES, render_login, render_page
from hub.sessions import SESSION_COOKIE

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)

# The pages load only the hub's own script and style, and no other site may frame them.
PAGE_POLICY = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
LOGIN_POLICY = PAGE_POLICY + "; style-src 'unsafe-inline'"
STATIC_TYPES = {"console.js": "text/javascript", "console.css": "text/css"}
FORM_LIMIT = 4096


def console_web_routes(service: HubService) -> list[Route]:
    """Sign-in, sign-out, the pages and their static files."""

    async def login_form(request: Request) -> Response:
        return _login_page(render_login(_language(request)))

    async def login(request: Request) -> Response:
        language = _language(request)
        form = parse_qs((await request.body())[:FORM_LIMIT].decode("utf-8", "replace"))
        name = (form.get("user") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        client = request.client.host if request.client else "unknown"
        keys = (f"user:{name}", f"address:{client}")

        if service.accounts.brake.locked(keys) > 0:
            wait = int(service.accounts.brake.locked(keys)) + 1
            page = _login_page(render_login(language, "login.locked"), 429)
            page.headers["Retry-After"] = str(wait)
            return page
        user = await asyncio.to_thread(service.accounts.users.verify, name, password)
        if user is None:
            service.accounts.brake.failed(keys)
            logger.warning("console sign-in refused for a user name from %s", client)
            return _login_page(render_login(language, "login.failed"), 401)

        service.accounts.brake.succeeded(keys)
        session = service.accounts.sessions.open(user, language)
        await service.audit.record(user.name, "console sign-in", "/login", {"from": client})
        response = RedirectResponse("/ui/overview", status_code=303)
        response.set_cookie(SESSION_COOKIE, session.session_id, httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        service.accounts.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def page(request: Request) -> Response:
        name = request.path_params["page"]
        if name not in PAGES:
            return HTMLResponse("no such page", status_code=404)
        return _page(render_page(name, _session_view(request), service.config.hub.id))

    async def device_page(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        view = _session_view(request)
        return _page(render_page("device", view, service.config.hub.id, device_id))

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_TYPES:
            return Response("not found", status_code=404)
        text = (resources.files("hub.console_web") / "static" / name).read_bytes()
        headers = {"Cache-Control": "no-cache"}
        return Response(text, media_type=STATIC_TYPES[name], headers=headers)

    return [
        Route("/login", login_form),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/ui/{page}", page),
        Route("/ui/devices/{device_id}", device_page),
        Route("/static/{name}", static),
    ]


def _page(text: str) -> Response:
    headers = {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-store"}
    return HTMLResponse(text, headers=headers)


def _login_page(text: str, status: int = 200) -> Response:
    headers = {"Content-Security-Policy": LOGIN_POLICY, "Cache-Control": "no-store"}
    return HTMLResponse(text, status_code=status, headers=headers)


def _language(request: Request) -> str:
    chosen = request.query_params.get("lang", "zh")
    return chosen if chosen in HTML_LANGUAGE else "zh"


def _session_view(request: Request) -> dict[str, str | None]:
    caller = request.state.caller
    session = caller.session
    return {
        "user": caller.actor,
        "role": caller.role.value,
        "language": session.language if session else _language(request),
        "csrf": session.csrf if session else None,
    }
