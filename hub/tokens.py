"""The console's API token: generated on first start, never a default.

The token lives in a file only its owner can read. It is compared in constant time
and never written to a log.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)


def load_or_create_token(path: Path) -> str:
    """Read the token in `path`, creating a random one (mode 0600) if there is none."""
    if path.exists():
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 32:
            return token
        logger.warning("API token in %s is too short; generating a new one", path)

    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(token + "\n")
    logger.info("generated a new API token in %s", path)
    return token


def token_matches(expected: str, offered: str | None) -> bool:
    """Constant-time comparison, so timing reveals nothing of the token."""
    if not offered:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())
