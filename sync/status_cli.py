"""``hallhub sync status`` and ``resolve``: a running hub's sync, through its console API.

It asks the hub (``GET /api/sync`` with the API token) rather than opening the
journal, so it shows what the running uplink knows: backlog, lag and last
acknowledgement per lane, the link, and what was set aside.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from sync.errors import StatusUnavailable


def fetch_status(console_url: str, token: str, timeout: float = 5.0) -> dict[str, Any]:
    """The hub's ``/api/sync`` document."""
    url = f"{console_url.rstrip('/')}/api/sync"
    try:
        response = httpx.get(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, trust_env=False
        )
    except httpx.TransportError as exc:
        raise StatusUnavailable(f"cannot reach the hub console at {url}: {exc}") from exc
    if response.status_code != 200:
        raise StatusUnavailable(f"{url} answered HTTP {response.status_code}: {response.text}")
    document: dict[str, Any] = response.json()
    return document


def resolve_quarantined(
    console_url: str, token: str, lane: str, seq: int, resolution: str, by: str
) -> dict[str, Any]:
    """Ask the hub to close a quarantine entry; returns the entry as it is now."""
    url = f"{console_url.rstrip('/')}/api/sync/quarantine/{lane}/{seq}/resolve"
    try:
        response = httpx.post(
            url,
            json={"resolution": resolution, "by": by},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
            trust_env=False,
        )
    except httpx.TransportError as exc:
        raise StatusUnavailable(f"cannot reach the hub console at {url}: {exc}") from exc
    if response.status_code != 200:
        raise StatusUnavailable(f"{url} answered HTTP {response.status_code}: {response.text}")
    entry: dict[str, Any] = response.json()["quarantine"]
    return entry


def read_token(path: Path) -> str:
    """The API token in `path`."""
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise StatusUnavailable(f"cannot read the API token in {path}: {exc.strerror}") from exc


def render(status: dict[str, Any], as_json: bool, now: float | None = None) -> str:
    """The status as JSON, or as a table for a person."""
    if as_json:
        return json.dumps(status, indent=2, ensure_ascii=False, sort_keys=True)
    if not status.get("configured"):
        return "sync: no city platform configured; events stay in the journal"

    now = time.time() if now is None else now
    lines = [f"{'lane':<10} {'backlog':>8} {'lag':>9} {'acked seq':>10}  {'last ack':<12} error"]
    lags = status.get("lag_seconds", {})
    for lane, row in status["lanes"].items():
        last_ack = row.get("last_ack_at")
        ack_age = "never" if last_ack is None else f"{_duration(now - last_ack)} ago"
        lines.append(
            f"{lane:<10} {row['backlog']:>8} {_duration(lags.get(lane)):>9}"
            f" {row['acked_seq']:>10}  {ack_age:<12} {row.get('last_error') or '-'}"
        )

    link = status.get("link") or {}
    lines.append(
        f"link: {link.get('state', '?')}, {link.get('consecutive_failures', 0)} failures in a"
        f" row, clock offset {link.get('clock_offset_seconds', 0):+.1f} s"
    )
    aside = status.get("set_aside", {})
    lines.append(
        f"quarantined (open): {aside.get('quarantined_open', 0)}   dead-lettered:"
        f" {aside.get('dead_lettered', 0)}   compacted events: {aside.get('compacted_events', 0)}"
    )
    for entry in aside.get("quarantine", [])[:10]:
        lines.append(
            f"  quarantined {entry['lane']} seq {entry['seq']} {entry['event_id']}:"
            f" {entry['reason']}"
        )
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
