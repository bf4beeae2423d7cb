"""Console sign-in sessions and the brake on guessed passwords.

A session lives in the hub's memory only: a restart signs everyone out. Its id is
the cookie (HttpOnly, SameSite=Strict); its CSRF token is handed to the page and
must come back in the ``X-CSRF-Token`` header (or a form field) of every POST.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field

from hub.clock import Clock
from hub.users import Role, User

logger = logging.getLogger(__name__)

SESSION_COOKIE = "hallhub_session"
SESSION_IDLE_SECONDS = 8 * 3600.0  # one working day in the hall
FAILURES_ALLOWED = 5
LOCKOUT_SECONDS = 300.0
LANGUAGES = ("zh", "en")
TRACKED_LIMIT = 10_000  # failing names and addresses remembered before stale ones go


@dataclass(slots=True)
class Session:
    """One signed-in user in one browser."""

    session_id: str
    user: str
    role: Role
    csrf: str
    language: str
    last_used: float
    credential: str  # the password hash signed in with: a new password ends the session

    def csrf_matches(self, offered: str | None) -> bool:
        """Constant-time check of the CSRF token a request carries."""
        return bool(offered) and hmac.compare_digest(self.csrf.encode(), str(offered).encode())


class SessionStore:
    """Sessions by id, expiring after a working day without use."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def open(self, user: User, language: str = "zh") -> Session:
        """A new session for a user who just proved their password."""
        session = Session(
            secrets.token_urlsafe(32),
            user.name,
            user.role,
            secrets.token_urlsafe(32),
            language if language in LANGUAGES else "zh",
            self._clock.monotonic(),
            user.password_hash,
        )
        self._sessions[session.session_id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session with this id, refreshed; None if unknown or expired."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        now = self._clock.monotonic()
        if session is None:
            return None
        if now - session.last_used > SESSION_IDLE_SECONDS:
            del self._sessions[session_id]
            return None
        session.last_used = now
        return session

    def close(self, session_id: str) -> None:
        """Sign a session out."""
        self._sessions.pop(session_id, None)


@dataclass(slots=True)
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    first_at: float = field(default=0.0)


class LoginBrake:
    """After a few wrong passwords for a name or from an address, refuse for a while."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    def locked(self, keys: tuple[str, ...]) -> float:
        """Seconds until any of `keys` (user name, client address) may try again."""
        now = self._clock.monotonic()
        waits = [f.locked_until - now for k in keys if (f := self._failures.get(k)) is not None]
        return max([0.0, *waits])

    def failed(self, keys: tuple[str, ...]) -> None:
        """Count one wrong password against each key; lock a key at the limit."""
        now = self._clock.monotonic()
        if len(self._failures) > TRACKED_LIMIT:
            self._forget_stale(now)
        for key in keys:
            failures = self._failures.setdefault(key, _Failures(first_at=now))
            if now - failures.first_at > LOCKOUT_SECONDS:
                failures.count, failures.first_at = 0, now
            failures.count += 1
            if failures.count >= FAILURES_ALLOWED:
                failures.locked_until = now + LOCKOUT_SECONDS
                failures.count, failures.first_at = 0, now
                logger.warning("console sign-in locked for %.0f s", LOCKOUT_SECONDS)

    def _forget_stale(self, now: float) -> None:
        """Drop keys neither locked nor failing lately, so guessed names cannot pile up."""
        stale = [
            key
            for key, f in self._failures.items()
            if f.locked_until <= now and now - f.first_at > LOCKOUT_SECONDS
        ]
        for key in stale:
            del self._failures[key]

    def succeeded(self, keys: tuple[str, ...]) -> None:
        """Forget the failures of the keys once a sign-in succeeds."""
        for key in keys:
            self._failures.pop(key, None)
