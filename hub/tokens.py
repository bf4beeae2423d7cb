"""The console's API token: generated on first start, never a default.

The token lives in a file only its owner can read. It is compared in constant time
and never written to a log.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

from hub.privatefile import write_private

logger = logging.getLogger(__name__)


def load_or_create_token(path: Path) -> str:
    """Read the token in `path`, creating a random one (mode 0600) if there is none."""
    if path.exists():
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 32:
            return token
        logger.warning("API token in %s is too short; generating a new one", path)

    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    logger.info("generated a new API token in %s", path)
    return token


def token_matches(expected: str, offered: str | None) -> bool:
    """Constant-time comparison, so timing reveals nothing of the token."""
    if not offered:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())
