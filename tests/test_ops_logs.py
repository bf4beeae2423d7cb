"""Logs: readable or JSON lines, levels per module, and never a secret or citizen id."""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.ops.logsetup import configure_logging, register_secrets
from hub.ops.settings import LogSection

TOKEN = "tok-3f9a1c2b7d7e4e0f9b1a"
ID_CARD = "11010519491231002X"
MOBILE = "13812345678"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put pytest's handlers and levels back after a test reconfigures logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("devices.mqtt_ingest").setLevel(logging.NOTSET)
    logging.getLogger("sync.uplink").setLevel(logging.NOTSET)


def test_json_lines_with_levels_per_module(restored_logging: None) -> None:
    """JSON format gives one object per line; a module set to DEBUG logs its DEBUG lines,
    one set to ERROR drops its warnings, others follow the root level."""
    stream = io.StringIO()
    settings = LogSection(
        format="json",
        level="INFO",
        levels={"devices.mqtt_ingest": "DEBUG", "sync.uplink": "ERROR"},
    )
    configure_logging(settings, stream=stream)

    logging.getLogger("devices.mqtt_ingest").debug("message %s journaled", "m-1")
    logging.getLogger("sync.uplink").warning("city slow")
    logging.getLogger("hub.service").debug("not shown")
    logging.getLogger("hub.service").info("hub %s running", "hall-east")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("devices.mqtt_ingest", "DEBUG", "message m-1 journaled"),
        ("hub.service", "INFO", "hub hall-east running"),
    ]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_secrets_and_citizen_identifiers_are_masked_in_every_format(
    restored_logging: None,
) -> None:
    """A registered secret, an identity card number and a mobile number logged by
    mistake come out as *** in both formats, including in exception text."""
    register_secrets([TOKEN])
    for log_format in ("text", "json"):
        stream = io.StringIO()
        configure_logging(LogSection(format=log_format), stream=stream)
        logger = logging.getLogger("hub.console")
        logger.warning("token %s for %s, phone %s", TOKEN, ID_CARD, MOBILE)
        try:
            raise ValueError(f"bad token {TOKEN}")
        except ValueError:
            logger.exception("refused")

        output = stream.getvalue()
        assert "***" in output
        for secret in (TOKEN, ID_CARD, MOBILE):
            assert secret not in output, (log_format, secret)


def demo_secrets(state_dir: Path) -> set[str]:
    """Every secret and citizen identifier the demo hall had, from its state folder."""
    found = {
        (state_dir / "hub" / "api-token").read_text().strip(),
        (state_dir / "hub" / "city-secret").read_text().strip(),
    }
    keys = json.loads((state_dir / "city" / "keys.json").read_text())["keys"]
    found |= {entry["secret"] for entry in keys.values()}
    conn = sqlite3.connect(f"file:{state_dir / 'hub' / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT json_extract(data, '$.appointment_id') FROM events"
            " WHERE json_extract(data, '$.appointment_id') IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return found | {row[0] for row in rows}


def test_a_whole_demo_run_logs_no_secret(tmp_path: Path) -> None:
    """`hallhub --log-level DEBUG demo --for 20`: its output, the hub's, receiver's and
    broker's logs hold none of the demo's secrets; the API token appears only in the
    banner that tells the user how to open the console."""
    state_dir = tmp_path / "demo"
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "--log-level",
            "DEBUG",
            "demo",
            "--for",
            "20",
            "--console-port",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert "reconciliation" in json.loads(finished.stdout), finished.stderr[-2000:]
    secrets = demo_secrets(state_dir)
    token = (state_dir / "hub" / "api-token").read_text().strip()
    banner = re.compile(rf"^  (overview: .*\?token={token}|API token: {token} .*)$")
    texts = {"stdout": finished.stdout, "stderr": finished.stderr}
    texts |= {str(path): path.read_text(errors="replace") for path in state_dir.rglob("*.log")}

    leaks = [
        (where, line)
        for where, text in texts.items()
        for line in text.splitlines()
        if any(secret in line for secret in secrets) and not banner.match(line)
    ]
    assert len(finished.stderr.splitlines()) > 100  # DEBUG really logged plenty
    assert len(texts) >= 4  # stdout, stderr, receiver.log, mosquitto.log
    assert leaks == []
