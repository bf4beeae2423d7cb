"""``hallhub alerts``: list, acknowledge, resolve and silence through the running hub.

The command talks to the hub's console API with the hub's token, never to the
journal file, so the hub stays its only writer and every change is announced.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hub.cli_output import emit
from hub.console_client import ConsoleClient, add_endpoint_options

LIST_COLUMNS = ["alert_id", "state", "severity", "team", "count", "message", "hold_reason"]


def add_parser(commands: Any) -> None:
    """Add ``alerts`` and its subcommands to the top-level parser."""
    alerts = commands.add_parser("alerts", help="list, acknowledge, resolve or silence alerts")
    add_endpoint_options(alerts)
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
    with ConsoleClient.from_args(args) as hub:
        if args.alerts_command == "list":
            query = "" if args.all else "?active=1"
            alerts = hub.call("GET", f"/api/alerts{query}")["alerts"]
            emit({"alerts": alerts}, alerts, LIST_COLUMNS, args.json)
            return 0
        if args.alerts_command in ("ack", "resolve"):
            action = "acknowledge" if args.alerts_command == "ack" else "resolve"
            path = f"/api/alerts/{args.alert_id}/{action}"
            alert = hub.call("POST", path, {"by": args.by})["alert"]
            sys.stdout.write(f"alert {alert['alert_id']} is {alert['state']}\n")
            return 0
        body = {
            "scope": args.scope,
            "value": args.value,
            "duration": args.duration,
            "reason": args.reason,
            "by": args.by,
        }
        silence = hub.call("POST", "/api/silences", body)["silence"]
        sys.stdout.write(f"silence {silence['silence_id']} on {args.scope} {args.value}\n")
        return 0
