"""Log output: readable lines or JSON lines, levels per module, secrets masked.

Logs go to standard error, where journald (or the demo's terminal) takes them.
Every line passes a mask on its way out: the hub's own secrets (API token, MQTT
password, HMAC keys), registered at start, and anything shaped like a citizen's
identity card number or mobile number are replaced by ``***``. Code must still
never log them; the mask is the second line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from hub.ops.settings import LogSection

MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# 18-character resident identity card numbers (GB 11643) and mainland mobile numbers.
_CITIZEN_IDS = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|1[3-9]\d{9})(?![0-9A-Za-z])")
# Shorter strings are too likely to occur in ordinary text to be masked everywhere.
_SHORTEST_SECRET = 8

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Mask these values wherever they would appear in a log line."""
    with _secrets_lock:
        _secrets.update(value for value in values if value and len(value) >= _SHORTEST_SECRET)


def mask(text: str) -> str:
    """`text` with registered secrets and citizen identifiers replaced by ``***``."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return _CITIZEN_IDS.sub(MASK, text)


class MaskedTextFormatter(logging.Formatter):
    """The readable format, masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask(json.dumps(entry, ensure_ascii=False))


class _StandardError(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when made.

    A test runner or a service wrapper may swap standard error after logging is
    set up; a handler holding the old stream would write into a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_HANDLER_NAME = "hallhub"


def configure_logging(
    settings: LogSection, level: str | None = None, stream: TextIO | None = None
) -> None:
    """Put one masked handler, on standard error, in place of the one set up before.

    Handlers others attached to the root logger (a test runner's) are left alone.
    `level`, when given (``--log-level`` on the command line), wins over the file's.
    """
    handler = logging.StreamHandler(stream) if stream is not None else _StandardError()
    json_lines = settings.format == "json"
    handler.setFormatter(JsonLinesFormatter() if json_lines else MaskedTextFormatter(TEXT_FORMAT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or settings.level).upper())
    for name, module_level in settings.levels.items():
        logging.getLogger(name).setLevel(module_level)
