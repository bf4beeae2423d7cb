"""Writing secrets to disk: owner-only, atomically, never half-written.

Every secret hallhub keeps (API token, HMAC keys, MQTT passwords, enrolment) goes
through `write_private`. It writes a new file created with mode 0600 and renames it
over the old one, so an existing file that was once readable by others is replaced,
not rewritten in place with its old permissions.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, content: bytes | str) -> None:
    """Replace `path` with `content`, readable and writable by its owner only."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
