"""``hallhub users``, ``hallhub rules …`` and ``hallhub sync drain``: the console's CLI mirror.

``users`` edits the users file of the hub's state folder directly (it works with
the hub stopped, and a running hub reads the file at every sign-in). ``rules`` and
``sync drain`` talk to the running hub's API, like the console does.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hub.audit import record_beside_the_hub
from hub.cli_output import Progress, emit, render_json
from hub.console_client import ConsoleClient, add_endpoint_options
from hub.errors import HallhubError
from hub.users import Role, UserStore

logger = logging.getLogger(__name__)

DRAIN_POLL_SECONDS = 1.0


def add_users_parser(commands: Any) -> None:
    """``hallhub users add|list|passwd|remove``."""
    users = commands.add_parser("users", help="console users: add, list, passwd, remove")
    users.add_argument("--config", type=Path, required=True, metavar="FILE")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[role.value for role in Role])
    listing = actions.add_parser("list", help="users and their roles")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    passwd = actions.add_parser("passwd", help="set a user's password (asks for it)")
    passwd.add_argument("name")
    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("name")


def add_rules_parser(commands: Any) -> None:
    """``hallhub rules list|enable|disable|validate|preview|replay``."""
    rules = commands.add_parser("rules", help="work with the hall's rules")
    actions = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    api_actions = [actions.add_parser("list", help="rules in force on the running hub")]
    for name in ("enable", "disable"):
        switch = actions.add_parser(name, help=f"{name} a rule on the running hub")
        switch.add_argument("rule_id")
        api_actions.append(switch)
    validate = actions.add_parser("validate", help="check a candidate rule file on the hub")
    validate.add_argument("file", type=Path)
    preview = actions.add_parser(
        "preview", help="replay a candidate rule file against the hub's journal (no effects)"
    )
    preview.add_argument("file", type=Path)
    preview.add_argument("--from", dest="start", required=True, metavar="DATE")
    preview.add_argument("--to", dest="end", required=True, metavar="DATE")
    for action in [*api_actions, validate, preview]:
        add_endpoint_options(action)
        action.add_argument("--json", action="store_true", help="print JSON instead of a table")

    replay = actions.add_parser(
        "replay", help="preview a candidate rule set against journaled events (no side effects)"
    )
    replay.add_argument("--config", type=Path, required=True, metavar="FILE")
    replay.add_argument("--from", dest="start", required=True, metavar="DATE")
    replay.add_argument("--to", dest="end", required=True, metavar="DATE")
    replay.add_argument("--rules", type=Path, required=True, metavar="DIR")


def add_sync_drain_parser(sync_commands: Any) -> None:
    """``hallhub sync drain``: wait, with a progress bar, until the city has everything."""
    drain = sync_commands.add_parser(
        "drain", help="wait until the city acknowledged the whole backlog, showing progress"
    )
    add_endpoint_options(drain)
    drain.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS")


def run_users(args: argparse.Namespace) -> int:
    """Carry out one ``hallhub users`` command; every change goes to the audit trail."""
    from hub.config import load_config

    config = load_config(args.config)
    store = UserStore.in_state_dir(config.hub.state_dir)
    if args.users_command == "list":
        users = [user.public() for user in store.all()]
        emit({"users": users}, users, ["name", "role"], args.json)
        return 0

    if args.users_command == "remove":
        store.remove(args.name)
        said, detail = f"removed user {args.name}", {}
    elif args.users_command == "add":
        store.add(args.name, args.role, _ask_password())
        said, detail = f"added user {args.name} ({args.role})", {"role": args.role}
    else:
        store.set_password(args.name, _ask_password())
        said, detail = f"changed the password of {args.name}", {}

    entry = (f"cli:{getpass.getuser()}", f"user.{args.users_command}", args.name)
    record_beside_the_hub(config.hub.state_dir / "journal.sqlite3", config.hub.id, entry, detail)
    sys.stdout.write(said + "\n")
    return 0


def run_rules(args: argparse.Namespace) -> int:
    """Carry out one API-backed ``hallhub rules`` command."""
    client = ConsoleClient.from_args(args)
    try:
        if args.rules_command == "list":
            rules = client.call("GET", "/api/rules")["rules"]
            emit({"rules": rules}, rules, ["id", "enabled", "description"], args.json)
        elif args.rules_command in ("enable", "disable"):
            reply = client.call("POST", f"/api/rules/{args.rule_id}/{args.rules_command}")
            emit(reply, [reply], ["rule", "enabled"], args.json)
        else:
            return _check_rules(client, args)
    finally:
        client.close()
    return 0


def run_sync_drain(args: argparse.Namespace) -> int:
    """Show the backlog draining; exit 0 once it is empty, 1 on timeout."""
    client = ConsoleClient.from_args(args)
    deadline = time.monotonic() + args.timeout
    try:
        first = _backlog(client.call("GET", "/api/sync"))
        progress = Progress(first, "events acknowledged by the city")
        left = first
        while left > 0 and time.monotonic() < deadline:
            progress.update(first - left)
            time.sleep(DRAIN_POLL_SECONDS)
            left = _backlog(client.call("GET", "/api/sync"))
        progress.update(first - left if left <= first else first)
        progress.finish()
    finally:
        client.close()
    return 0 if left == 0 else 1


def _check_rules(client: ConsoleClient, args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise HallhubError(f"cannot read {args.file}: {exc.strerror}") from exc
    if args.rules_command == "validate":
        reply = client.call("POST", "/api/rules/validate", {"rules": text})
        sys.stdout.write(render_json(reply) + "\n")
        return 0

    body = {"rules": text, "from": args.start, "to": args.end}
    reply = _with_spinner(lambda: client.call("POST", "/api/rules/preview", body), "replaying")
    if args.json:
        sys.stdout.write(render_json(reply) + "\n")
        return 0
    by_rule = reply["by_rule"]
    names = sorted({*by_rule["current"], *by_rule["candidate"], *by_rule["recorded"]})
    rows = [
        {
            "rule": name,
            "recorded": by_rule["recorded"].get(name, 0),
            "now": by_rule["current"].get(name, 0),
            "candidate": by_rule["candidate"].get(name, 0),
        }
        for name in names
    ]
    emit(reply, rows, ["rule", "recorded", "now", "candidate"], False)
    sys.stdout.write(f"{reply['events']} events replayed\n")
    return 0


def _with_spinner(work: Any, label: str) -> Any:
    """Run `work` while a progress line shows the seconds spent (total unknown)."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # re-raised in the calling thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="cli-request", daemon=True)
    worker.start()
    progress = Progress(0, label)
    while worker.is_alive():
        progress.update(0)
        worker.join(0.5)
    progress.finish()
    if failure:
        raise failure[0]
    return result[0]


def _backlog(status: dict[str, Any]) -> int:
    return sum(int(row.get("backlog", 0)) for row in status.get("lanes", {}).values())


def _ask_password() -> str:
    """The new password: typed twice on a terminal, or one line on standard input."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise HallhubError("the two passwords differ; nothing changed")
    return first
