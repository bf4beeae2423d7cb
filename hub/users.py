"""Local console users of the hall: names, roles and argon2 password hashes.

The users live in one JSON file in the hub's state folder, readable by its owner
only. Passwords are never stored or logged, only their argon2id hashes. There is no
default password: the first start creates ``admin`` with a random password, which
the caller shows once to whoever started the hub.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hub.errors import HallhubError
from hub.privatefile import write_private

logger = logging.getLogger(__name__)

USERS_FILE = "console-users.json"
FIRST_ADMIN = "admin"
MIN_PASSWORD = 12
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")

_hasher = PasswordHasher()


class Role(StrEnum):
    """What a console user may do, from most to least."""

    ADMIN = "admin"  # everything, users and rules included
    OPERATOR = "operator"  # devices, alerts, sync: the hall's daily work
    CREW = "crew"  # sees everything, acknowledges and resolves alerts
    VIEWER = "viewer"  # sees everything, changes nothing


class UserError(HallhubError):
    """A user change was refused; the message says which user and why."""


@dataclass(frozen=True, slots=True)
class User:
    """One console user, as stored (the hash, never the password)."""

    name: str
    role: Role
    password_hash: str

    def public(self) -> dict[str, str]:
        """What may be shown about the user: never the hash."""
        return {"name": self.name, "role": self.role.value}


class UserStore:
    """Reads and writes the users file; every change rewrites it atomically, mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> UserStore:
        """The users file of the hub whose state folder is `state_dir`."""
        return cls(state_dir / USERS_FILE)

    def all(self) -> list[User]:
        """Every user, sorted by name (none if the file does not exist yet)."""
        if not self.path.exists():
            return []
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))["users"]
            return [User(r["name"], Role(r["role"]), r["password_hash"]) for r in rows]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"users file {self.path} is unreadable: {exc}") from exc

    def get(self, name: str) -> User | None:
        """The user called `name`, if there is one."""
        return next((user for user in self.all() if user.name == name), None)

    def add(self, name: str, role: str, password: str) -> User:
        """Create a user; refuses a taken name, an unknown role or a short password."""
        _check_name(name)
        _check_password(password)
        users = self.all()
        if any(user.name == name for user in users):
            raise UserError(f"user {name!r} already exists")
        user = User(name, _role(role), _hasher.hash(password))
        self._save([*users, user])
        logger.info("console user %s added with role %s", name, user.role.value)
        return user

    def set_password(self, name: str, password: str) -> None:
        """Replace the password of an existing user."""
        _check_password(password)
        users = self._existing(name)
        new_hash = _hasher.hash(password)
        self._save([User(u.name, u.role, new_hash) if u.name == name else u for u in users])
        logger.info("console user %s changed password", name)

    def remove(self, name: str) -> None:
        """Delete a user; the last admin cannot be removed (nobody could manage users)."""
        users = self._existing(name)
        left = [user for user in users if user.name != name]
        if not any(user.role is Role.ADMIN for user in left):
            raise UserError(f"user {name!r} is the last admin; add another admin first")
        self._save(left)
        logger.info("console user %s removed", name)

    def verify(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs; None otherwise (unknown name included)."""
        user = self.get(name)
        if user is None:
            # Hash anyway so an unknown name takes as long as a wrong password.
            _hasher.hash(password)
            return None
        try:
            _hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return user

    def create_first_admin(self) -> str | None:
        """On a hub with no users, create ``admin`` and return its random password."""
        if self.all():
            return None
        password = secrets.token_urlsafe(18)
        self.add(FIRST_ADMIN, Role.ADMIN.value, password)
        return password

    def _existing(self, name: str) -> list[User]:
        users = self.all()
        if not any(user.name == name for user in users):
            raise UserError(f"no user {name!r}")
        return users

    def _save(self, users: list[User]) -> None:
        rows = [
            {"name": u.name, "role": u.role.value, "password_hash": u.password_hash} for u in users
        ]
        write_private(self.path, json.dumps({"users": rows}, indent=2) + "\n")


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError as exc:
        choices = ", ".join(r.value for r in Role)
        raise UserError(f"unknown role {role!r}; choose one of {choices}") from exc


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UserError(
            f"user name {name!r} must be 2-32 characters: lower-case letters, digits, . _ -"
        )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
