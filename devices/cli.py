"""``hallhub devices``: list, show, commission and retire devices of the running hub.

Like ``hallhub alerts``, it talks to the hub's console API with the hub's token,
never to the journal file, so the hub stays the only writer and every change lands
in the audit trail.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from hub.console_client import ConsoleClient, add_endpoint_options


def add_parser(commands: Any) -> None:
    """Add ``devices`` and its subcommands to the top-level parser."""
    devices = commands.add_parser("devices", help="list, show, commission or retire devices")
    add_endpoint_options(devices)
    devices.add_argument("--json", action="store_true", help="print JSON instead of text")
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every device, pending ones included")
    listing.add_argument("--state", choices=("pending", "commissioned", "retired"))
    listing.add_argument("--drifted", action="store_true", help="only devices showing drift")
    show = actions.add_parser("show", help="one device: health, drift, recent commands")
    show.add_argument("device_id")
    commission = actions.add_parser("commission", help="take a pending or retired device in")
    commission.add_argument("device_id")
    commission.add_argument("--model", help="device model (required for a pending device)")
    commission.add_argument("--zone")
    commission.add_argument("--floor", type=int)
    commission.add_argument("--window")
    commission.add_argument("--by", default="cli")
    retire = actions.add_parser("retire", help="stop taking a device's messages")
    retire.add_argument("device_id")
    retire.add_argument("--by", default="cli")


def run(args: argparse.Namespace) -> int:
    """Carry out one ``hallhub devices`` command and print the result."""
    with ConsoleClient.from_args(args) as hub:
        reply = _request(hub, args)
    if args.json:
        sys.stdout.write(json.dumps(reply, ensure_ascii=False, indent=2) + "\n")
    elif "devices" in reply:
        _print_list(reply["devices"])
    else:
        _print_device(reply["device"])
    return 0


def _request(hub: ConsoleClient, args: argparse.Namespace) -> Any:
    """The hub's JSON answer to the command in `args`."""
    action = args.devices_command
    if action == "list":
        query = {"state": args.state} if args.state else {}
        if args.drifted:
            query["drifted"] = "1"
        suffix = "?" + str(httpx.QueryParams(query)) if query else ""
        return hub.call("GET", f"/api/devices{suffix}")
    path = f"/api/devices/{args.device_id}"
    if action == "show":
        return hub.call("GET", path)
    body: dict[str, Any] = {"by": args.by}
    if action == "commission":
        fields = {"model": args.model, "zone": args.zone, "floor": args.floor}
        body |= {k: v for k, v in {**fields, "window": args.window}.items() if v is not None}
    return hub.call("POST", f"{path}/{action}", body)


def _print_list(devices: list[dict[str, Any]]) -> None:
    if not devices:
        sys.stdout.write("no devices\n")
        return
    for device in devices:
        health = _health(device)
        drift = "  DRIFTED" if device.get("drifted") else ""
        sys.stdout.write(
            f"{device['device_id']:<28} {device['state']:<13} {device.get('model', '-'):<26}"
            f" {health}{drift}\n"
        )


def _print_device(device: dict[str, Any]) -> None:
    for key in ("device_id", "state", "kind", "model", "address", "zone", "floor", "window"):
        if device.get(key) is not None:
            sys.stdout.write(f"{key:<18} {device[key]}\n")
    sys.stdout.write(f"{'health':<18} {_health(device)}\n")
    for key in ("battery", "paper", "firmware", "expected_firmware", "messages_kept"):
        if device.get(key) is not None:
            sys.stdout.write(f"{key:<18} {device[key]}\n")
    for drift in device.get("drift", []):
        sys.stdout.write(
            f"{'drift':<18} {drift['field']}: expected {drift['expected']},"
            f" reported {drift['reported']}\n"
        )
    for command in device.get("commands", [])[:10]:
        sys.stdout.write(
            f"{'command':<18} {command['request_id']} {command['command']} {command['state']}"
            f" {command['detail']}\n"
        )


def _health(device: dict[str, Any]) -> str:
    if device["state"] == "pending":
        return f"{device['messages_kept']} messages kept, waiting for commissioning"
    state = "online" if device.get("online") else "offline"
    return f"{state} ({device.get('reason', '')})"
