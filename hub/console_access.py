"""Who may use the console, what each role may change, and the audit of every change.

A request is let in by one of:

* a signed-in session (cookie ``hallhub_session``): every POST must carry the
  session's CSRF token in ``X-CSRF-Token`` (or a ``csrf`` form field), and the
  user's role must allow the change;
* the API token as ``Authorization: Bearer`` (automation, the CLI): full rights;
* the older token cookie set by ``/?token=``: reading only, plus the phone page's
  own CSRF-checked forms.

A change whose ``Origin`` header names another site is refused outright, sign-in
included. ``/healthz`` and the sign-in page are open; ``/metrics`` is open only when
``console.metrics_auth`` is false. Every change that succeeds is appended to the
audit trail with who made it, and announced on the live channel.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from hub.alerts.mobile import PAGE as MOBILE_PAGE
from hub.alerts.mobile import csrf_matches
from hub.clock import Clock
from hub.sessions import SESSION_COOKIE, LoginBrake, Session, SessionStore
from hub.tokens import token_matches
from hub.users import FIRST_ADMIN, Role, UserStore

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)

TOKEN_COOKIE = "hallhub_token"
OPEN_ROUTES = frozenset({"/healthz", "/login"})
CHANGE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CREW_CHANGES = ("/acknowledge", "/ack", "/resolve")
ADMIN_ONLY_PREFIXES = ("/api/rules/",)
READ_ONLY_POSTS = ("/api/rules/validate", "/api/rules/preview")
ANY_ROLE_POSTS = ("/logout", "/api/session/language")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, for the audit trail and the role check."""

    actor: str
    role: Role
    session: Session | None = None


class ConsoleAccounts:
    """The console's users, their open sessions and the brake on failed sign-ins."""

    def __init__(self, state_dir: Path, clock: Clock) -> None:
        self.users = UserStore.in_state_dir(state_dir)
        self.sessions = SessionStore(clock)
        self.brake = LoginBrake(clock)

    def session_of(self, session_id: str | None) -> Session | None:
        """The live session, unless its user was removed or changed password since."""
        session = self.sessions.find(session_id)
        if session is None:
            return None
        user = self.users.get(session.user)
        if user is None or user.password_hash != session.credential or user.role != session.role:
            self.sessions.close(session.session_id)
            logger.info("session of %s ended: the user changed or was removed", session.user)
            return None
        return session

    def create_first_admin(self, terminal: TextIO | None = None) -> bool:
        """On first start, create ``admin`` and show its password once on `terminal`.

        The password goes to the terminal of whoever started the hub, never to the
        log, and is not kept anywhere but as its hash.
        """
        password = self.users.create_first_admin()
        if password is None:
            return False
        (terminal or sys.stderr).write(
            f"hallhub: first start: console user {FIRST_ADMIN!r} created with password "
            f"{password} (shown only this once; change it with "
            f"`hallhub users --config <your hallhub.yaml> passwd {FIRST_ADMIN}`)\n"
        )
        logger.info("first console user %s created; its password was shown once", FIRST_ADMIN)
        return True


def role_allows(role: Role, method: str, path: str) -> bool:
    """Whether `role` may make this request (reading is open to every role)."""
    if method not in CHANGE_METHODS or path in ANY_ROLE_POSTS:
        return True
    if role is Role.ADMIN:
        return True
    if path in READ_ONLY_POSTS:
        return role is Role.OPERATOR
    if role is Role.OPERATOR:
        return not path.startswith(ADMIN_ONLY_PREFIXES)
    if role is Role.CREW:
        return path.startswith(("/api/alerts/", "/m/")) and path.endswith(CREW_CHANGES)
    return False


class ConsoleAccess(BaseHTTPMiddleware):
    """Authenticates, authorises, checks CSRF, and audits changes."""

    def __init__(self, app: Any, service: HubService) -> None:
        super().__init__(app)
        self._service = service

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if path == "/login" and request.method == "POST" and not _same_origin(request):
            return JSONResponse({"error": "cross-site sign-in refused"}, status_code=403)
        if path in OPEN_ROUTES or (path == "/metrics" and not self._metrics_need_auth()):
            return await call_next(request)
        if path in ("/", MOBILE_PAGE) and token_matches(
            self._service.token, request.query_params.get("token")
        ):
            return _remember_token(self._service.token, path)

        caller = self._identify(request)
        if caller is None:
            return _refuse_anonymous(request)
        refusal = self._refusal(request, caller)
        if refusal is not None:
            return refusal

        request.state.caller = caller
        response = await call_next(request)
        if request.method in CHANGE_METHODS and response.status_code < 400:
            await self._record(request, caller, response.status_code)
        return response

    def _identify(self, request: Request) -> Caller | None:
        token = self._service.token
        if token_matches(token, _bearer(request)):
            return Caller("api-token", Role.ADMIN)
        session = self._service.accounts.session_of(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return Caller(session.user, session.role, session)
        if token_matches(token, request.cookies.get(TOKEN_COOKIE)) and (
            request.method == "GET" or _mobile_form(request, token)
        ):
            return Caller("console-token", Role.ADMIN)
        return None

    def _refusal(self, request: Request, caller: Caller) -> Response | None:
        changing = request.method in CHANGE_METHODS
        if changing and not _same_origin(request):
            return JSONResponse({"error": "cross-site request refused"}, status_code=403)
        if changing and caller.session is not None:
            offered = request.headers.get("x-csrf-token") or request.query_params.get("csrf")
            if not (
                caller.session.csrf_matches(offered) or _mobile_form(request, self._service.token)
            ):
                return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        if not role_allows(caller.role, request.method, request.url.path):
            return JSONResponse(
                {"error": f"role {caller.role.value} may not do this"}, status_code=403
            )
        return None

    def _metrics_need_auth(self) -> bool:
        return bool(self._service.config.console.metrics_auth)

    async def _record(self, request: Request, caller: Caller, status: int) -> None:
        path = request.url.path
        await self._service.audit.record(
            caller.actor, f"console {request.method}", path, {"status": status}
        )
        self._service.live.publish("change", {"path": path, "by": caller.actor})


def _same_origin(request: Request) -> bool:
    """False for a browser request another site started (its Origin names another host)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by browsers' same-origin form posts of old, nor by the CLI
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _refuse_anonymous(request: Request) -> Response:
    if request.method == "GET" and request.url.path.startswith("/ui/"):
        return RedirectResponse("/login", status_code=303)
    return JSONResponse({"error": "authentication required"}, status_code=401)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _mobile_form(request: Request, token: str) -> bool:
    """A phone's form post: under /m/ and carrying the page's CSRF token."""
    return request.url.path.startswith("/m/") and csrf_matches(
        token, request.query_params.get("csrf")
    )


def _remember_token(token: str, page: str) -> Response:
    response = RedirectResponse(page, status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response
