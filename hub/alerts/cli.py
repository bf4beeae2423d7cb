"""``hallhub alerts``: list, acknowledge, resolve and silence through the running hub.

The command talks to the hub's console API with the hub's token, never to the
journal file, so the hub stays its only writer and every change is announced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from hub.alerts.errors import AlertError
from hub.cli_output import emit

TIMEOUT = 10.0
LIST_COLUMNS = ["alert_id", "state", "severity", "team", "count", "message", "hold_reason"]


def add_parser(commands: Any) -> None:
    """Add ``alerts`` and its subcommands to the top-level parser."""
    alerts = commands.add_parser("alerts", help="list, acknowledge, resolve or silence alerts")
    alerts.add_argument("--config", type=Path, metavar="FILE", help="the hub's configuration")
    alerts.add_argument("--url", help="console URL (default: from --config)")
    alerts.add_argument("--token-file", type=Path, help="API token file (default: from --config)")
    actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="active alerts (--all for resolved ones too)")
    listing.add_argument("--all", action="store_true")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for name in ("ack", "resolve"):
        act = actions.add_parser(name, help=f"{name} an alert by id")
        act.add_argument("alert_id", type=int)
        act.add_argument("--by", default="cli")
    silence = actions.add_parser("silence", help="hold pages for a device, zone or kind")
    silence.add_argument("scope", choices=("device", "zone", "kind"))
    silence.add_argument("value")
    silence.add_argument("--for", dest="duration", type=float, required=True, metavar="SECONDS")
    silence.add_argument("--reason", default="")
    silence.add_argument("--by", default="cli")


def run(args: argparse.Namespace) -> int:
    """Carry out one ``hallhub alerts`` command; print the result for a person."""
    url, token = _endpoint(args)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as api:
        if args.alerts_command == "list":
            query = "" if args.all else "?active=1"
            alerts = _call(api, "GET", f"/api/alerts{query}")["alerts"]
            emit({"alerts": alerts}, alerts, LIST_COLUMNS, args.json)
            return 0
        if args.alerts_command in ("ack", "resolve"):
            action = "acknowledge" if args.alerts_command == "ack" else "resolve"
            path = f"/api/alerts/{args.alert_id}/{action}"
            alert = _call(api, "POST", path, {"by": args.by})["alert"]
            sys.stdout.write(f"alert {alert['alert_id']} is {alert['state']}\n")
            return 0
        body = {
            "scope": args.scope,
            "value": args.value,
            "duration": args.duration,
            "reason": args.reason,
            "by": args.by,
        }
        silence = _call(api, "POST", "/api/silences", body)["silence"]
        sys.stdout.write(f"silence {silence['silence_id']} on {args.scope} {args.value}\n")
        return 0


def _endpoint(args: argparse.Namespace) -> tuple[str, str]:
    url, token_file = args.url, args.token_file
    if args.config is not None:
        from hub.config import load_config

        config = load_config(args.config)
        url = url or f"http://{config.console.host}:{config.console.port}/"
        token_file = token_file or config.console.token_file or config.hub.state_dir / "api-token"
    if url is None or token_file is None:
        raise AlertError("give --config FILE, or both --url and --token-file")
    try:
        token = token_file.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise AlertError(f"cannot read the API token from {token_file}: {exc}") from exc
    return url, token


def _call(
    api: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    try:
        response = api.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise AlertError(f"cannot reach the hub at {api.base_url}: {exc}") from exc
    reply: dict[str, Any] = response.json()
    if response.is_error:
        raise AlertError(f"hub answered {response.status_code}: {reply.get('error', reply)}")
    return reply
