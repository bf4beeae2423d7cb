"""``hallhub queue``: the live queue and the window actions, through the running hub.

Like ``hallhub alerts``, it talks to the hub's console API with the hub's token,
never to the journal file, so the hub stays its only writer and every call is
announced to the call screens.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# The console API client of `hallhub alerts`: same token, same error reporting.
from hub.console_client import ConsoleClient, add_endpoint_options

WINDOW_ACTIONS = ("call", "recall", "skip", "open", "pause", "close")


def add_parser(commands: Any) -> None:
    """Add ``queue`` and its subcommands to the top-level parser."""
    queue = commands.add_parser("queue", help="show the live queue, or act for a window")
    add_endpoint_options(queue)
    queue.add_argument("--json", action="store_true", help="print the queue as JSON")
    actions = queue.add_subparsers(dest="queue_command", metavar="ACTION")
    for name in WINDOW_ACTIONS:
        act = actions.add_parser(name, help=f"{name} at a window")
        act.add_argument("window")
    transfer = actions.add_parser("transfer", help="send a window's ticket elsewhere")
    transfer.add_argument("window")
    target = transfer.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-category", metavar="LETTER")
    target.add_argument("--to-window", metavar="WINDOW")
    requeue = actions.add_parser("requeue", help="put a skipped ticket back in its queue")
    requeue.add_argument("ticket")


def run(args: argparse.Namespace) -> int:
    """Carry out one ``hallhub queue`` command; print the result for a person."""
    with ConsoleClient.from_args(args) as hub:
        if args.queue_command is None:
            view = hub.call("GET", "/api/queue")
            sys.stdout.write(
                json.dumps(view, ensure_ascii=False) + "\n" if args.json else _describe(view)
            )
            return 0
        if args.queue_command == "requeue":
            path, body = f"/api/queue/tickets/{args.ticket}/requeue", {}
        else:
            path = f"/api/queue/windows/{args.window}/{args.queue_command}"
            body = _transfer_body(args)
        result = hub.call("POST", path, body)["result"]
        sys.stdout.write(_outcome(args, result))
        return 0


def _transfer_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.queue_command != "transfer":
        return {}
    return {"category": args.to_category, "window": args.to_window}


def _outcome(args: argparse.Namespace, result: dict[str, Any] | None) -> str:
    if result is None:
        return f"{args.window}: nobody waiting\n"
    if "state" in result and "serving" in result:
        return f"{result['window']} is {result['state']}\n"
    return f"{result['ticket']}: {result['state']}" + (
        f" at {result['window']}\n" if result.get("window") else "\n"
    )


def _describe(view: dict[str, Any]) -> str:
    lines = [f"{view['tickets_issued_today']} tickets issued today"]
    for category in view["categories"]:
        lines.append(
            f"  {category['category']:<3} {category['name']:<20} waiting {category['waiting']:>4}"
            f"  average wait {category['average_wait_s']:.0f} s"
        )
    for window in view["windows"]:
        serving = window["serving"] or "-"
        lines.append(
            f"  {window['window']:<6} {window['state']:<7} serving {serving:<6}"
            f" categories {','.join(window['categories'])}"
        )
    return "\n".join(lines) + "\n"
