"""Sessions and the sign-in brake, with time driven by the test (ManualClock)."""

from __future__ import annotations

from hub.clock import ManualClock
from hub.sessions import (
    FAILURES_ALLOWED,
    LOCKOUT_SECONDS,
    SESSION_IDLE_SECONDS,
    LoginBrake,
    SessionStore,
)
from hub.users import Role, User

KEYS = ("user:ops", "address:127.0.0.1")


async def test_the_brake_locks_at_the_limit_and_lets_go_after_the_lockout() -> None:
    """One failure short of the limit still lets a user try; at the limit both the name
    and the address wait the lockout out; a success forgets the count."""
    clock = ManualClock()
    brake = LoginBrake(clock)
    for _ in range(FAILURES_ALLOWED - 1):
        brake.failed(KEYS)
    before_limit = brake.locked(KEYS)
    brake.failed(KEYS)
    at_limit = brake.locked(("user:ops",)), brake.locked(("address:127.0.0.1",))
    await clock.advance(LOCKOUT_SECONDS + 1)
    after_lockout = brake.locked(KEYS)
    brake.failed(KEYS)
    brake.succeeded(KEYS)
    for _ in range(FAILURES_ALLOWED - 1):
        brake.failed(KEYS)

    assert before_limit == 0.0
    assert at_limit == (LOCKOUT_SECONDS, LOCKOUT_SECONDS)
    assert after_lockout == 0.0
    assert brake.locked(KEYS) == 0.0  # the success reset the count


async def test_sessions_end_after_a_working_day_unused_and_on_sign_out() -> None:
    """A session used within the idle limit stays; one left a working day is gone; a
    signed-out one is gone at once; each has its own CSRF token."""
    clock = ManualClock()
    store = SessionStore(clock)
    user = User("ops", Role.OPERATOR, "$argon2id$stand-in")
    kept, idle, left = store.open(user), store.open(user, "en"), store.open(user)

    await clock.advance(SESSION_IDLE_SECONDS - 60)
    assert store.find(kept.session_id) is kept
    store.close(left.session_id)
    await clock.advance(120)

    assert store.find(kept.session_id) is kept
    assert store.find(idle.session_id) is None
    assert store.find(left.session_id) is None
    assert idle.language == "en" and len({kept.csrf, idle.csrf, left.csrf}) == 3
    assert kept.csrf_matches(kept.csrf) and not kept.csrf_matches(idle.csrf)
