"""The ``hallhub`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

import yaml

from hub.errors import HallhubError

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hallhub", description="Edge hub for a government service hall."
    )
    parser.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING or ERROR (default: the configuration's, INFO)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a whole simulated hall on this machine")
    demo.add_argument(
        "--for",
        dest="duration",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS and print a JSON reconciliation summary",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        help="where the demo keeps its files (default: a new folder under ./var/)",
    )
    demo.add_argument(
        "--console-port",
        type=int,
        default=8080,
        help="port of the console on 127.0.0.1 (0 picks a free one)",
    )

    run = commands.add_parser("run", help="run the hub with a hall configuration file")
    run.add_argument("--config", type=Path, required=True, metavar="FILE")

    acl = commands.add_parser(
        "mqtt-acl", help="write the broker's password and ACL files from the registry"
    )
    acl.add_argument("--config", type=Path, required=True, metavar="FILE")
    acl.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where to write them (default: <state_dir>/mqtt-auth)",
    )

    simulate = commands.add_parser("simulate", help="run simulated hall devices")
    simulate.add_argument("--broker-host", default="127.0.0.1")
    simulate.add_argument("--broker-port", type=int, required=True)
    simulate.add_argument("--topic-root", default="hall")
    simulate.add_argument(
        "--modbus-port",
        type=int,
        default=0,
        help="port of the simulated Modbus people counter on 127.0.0.1 (0 picks a free one)",
    )
    _add_modbus_fault_arguments(simulate)
    simulate.add_argument(
        "--log",
        type=Path,
        default=Path("published.jsonl"),
        help="publication log: one line per message the broker acknowledged",
    )
    from devices.simulators.mqtt_faults import add_fault_arguments

    add_fault_arguments(simulate)

    enroll = commands.add_parser(
        "enroll", help="enrol this hub with the city: URL, trust anchor, keys (files mode 0600)"
    )
    enroll.add_argument("--config", type=Path, required=True, metavar="FILE")
    enroll.add_argument("--city-url", required=True, help="https://… of the city receiver")
    enroll.add_argument("--ca", type=Path, required=True, help="the city's private CA (PEM)")
    enroll.add_argument("--key-id", required=True, help="signing key id the city issued")
    enroll.add_argument(
        "--secret-file", type=Path, required=True, help="file holding the key's secret in hex"
    )
    enroll.add_argument("--client-cert", type=Path, help="client certificate for mutual TLS")
    enroll.add_argument("--client-key", type=Path, help="private key of --client-cert")
    enroll.add_argument(
        "--no-check", action="store_true", help="do not try the enrolment on the city"
    )

    sync = commands.add_parser("sync", help="city sync of a running hub")
    sync_commands = sync.add_subparsers(dest="sync_command", required=True, metavar="SUBCOMMAND")
    status = sync_commands.add_parser(
        "status", help="backlog, lag, last ack per lane; quarantined and dead-lettered events"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    resolve = sync_commands.add_parser(
        "resolve", help="record what was done about a quarantined alarm, rating or ticket"
    )
    resolve.add_argument("lane", choices=("alarm", "rating", "ticket"))
    resolve.add_argument("seq", type=int, help="the event's seq, as `sync status` shows it")
    resolve.add_argument("--resolution", required=True, help="what was done about it")
    resolve.add_argument("--by", default="cli", help="who resolved it (for the audit trail)")
    for command in (status, resolve):
        command.add_argument("--config", type=Path, metavar="FILE", help="the hub's config")
        command.add_argument("--url", help="console URL (default: from --config)")
        command.add_argument("--token-file", type=Path, help="API token (default: --config)")

    from hub.alerts.cli import add_parser as add_alerts_parser
    from hub.tickets.cli import add_parser as add_queue_parser

    add_alerts_parser(commands)
    from devices.cli import add_parser as add_devices_parser

    add_queue_parser(commands)

    add_devices_parser(commands)

    from hub.ratings.cli import add_parser as add_ratings_parser

    add_ratings_parser(commands)

    from hub.console_cli import add_rules_parser, add_sync_drain_parser, add_users_parser

    add_sync_drain_parser(sync_commands)
    add_rules_parser(commands)
    add_users_parser(commands)

    from hub.ops.cli import add_parsers as add_operations_parsers

    add_operations_parsers(commands)

    bench = commands.add_parser("bench", help="run every benchmark in bench/, print one table")
    bench.add_argument("--quick", action="store_true", help="short runs of each benchmark")
    bench.add_argument("--only", action="append", metavar="NAME", help="run only these")

    # Its options belong to sync.receiver; they are passed through unparsed.
    commands.add_parser(
        "city-receiver",
        help="run the reference city receiver (--db FILE --port N --keys FILE [--host H])",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, passed_on = parser.parse_known_args(argv)
    if args.command == "city-receiver":
        from sync.receiver import main as receiver_main

        return receiver_main(passed_on)
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    from hub.ops.logsetup import configure_logging
    from hub.ops.settings import LogSection

    configure_logging(LogSection(), args.log_level)
    # pymodbus logs every failed connect and timeout itself, with packet dumps; the
    # poller already logs each outage once and its recovery, so keep pymodbus quiet.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # httpx logs every request at INFO; the uplink logs outages and recoveries itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return _dispatch(args)
    except HallhubError as exc:
        sys.stderr.write(f"hallhub: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("rules", "users") or getattr(args, "sync_command", "") == "drain":
        return _console_command(args)
    if args.command == "demo":
        from hub.demo import run_demo

        state_dir = args.state_dir or Path("var") / time.strftime("demo-%Y%m%d-%H%M%S")
        return asyncio.run(run_demo(args.duration, state_dir.resolve(), args.console_port))
    if args.command == "run":
        return asyncio.run(_run_hub(args.config, args.log_level))
    if args.command == "mqtt-acl":
        return _write_mqtt_acl(args.config, args.out)
    if args.command == "simulate":
        return asyncio.run(_simulate(args))
    if args.command == "enroll":
        return _enroll(args)
    if args.command == "sync":
        return _sync(args)

    if args.command == "alerts":
        from hub.alerts.cli import run as run_alerts_command

        return run_alerts_command(args)
    if args.command == "ratings":
        from hub.ratings.cli import run as run_ratings_command

        return run_ratings_command(args)
    from hub.ops.cli import COMMANDS as OPERATIONS_COMMANDS

    if args.command in OPERATIONS_COMMANDS:
        from hub.ops.cli import run as run_operations_command

        return run_operations_command(args)
    if args.command == "devices":
        from devices.cli import run as run_devices_command

        return run_devices_command(args)
    if args.command == "queue":
        from hub.tickets.cli import run as run_queue_command

        return run_queue_command(args)
    if args.command == "bench":
        from hub.benchmarks import run_benchmarks

        return run_benchmarks(args.quick, args.only)
    raise AssertionError(f"unhandled command {args.command}")


def _console_command(args: argparse.Namespace) -> int:
    from hub import console_cli

    if args.command == "users":
        return console_cli.run_users(args)
    if args.command == "sync":
        return console_cli.run_sync_drain(args)
    if args.rules_command == "replay":
        return _rules_replay(args)
    return console_cli.run_rules(args)


def _rules_replay(args: argparse.Namespace) -> int:
    from rules.replay import preview_for_config

    report = preview_for_config(args.config, args.start, args.end, args.rules)
    sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    return 0


async def _run_hub(config_path: Path, log_level: str | None) -> int:
    from hub.config import load_config
    from hub.ops.lifecycle import serve
    from hub.ops.logsetup import configure_logging
    from hub.service import HubService

    config = load_config(config_path)
    configure_logging(config.operations.logs, log_level)
    return await serve(HubService(config))


def _enroll(args: argparse.Namespace) -> int:
    from hub.config import load_config
    from sync.enrolment import enroll
    from sync.keys import HubKey

    config = load_config(args.config)
    try:
        secret = bytes.fromhex(args.secret_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"hallhub: cannot read the secret from {args.secret_file}: {exc}\n")
        return 2
    key = HubKey(args.key_id, config.hub.id, secret, created_at=time.time())
    path = enroll(
        config.hub.state_dir,
        config.hub.id,
        args.city_url,
        args.ca,
        key=key,
        client_cert=args.client_cert,
        client_key=args.client_key,
    )
    print(f"enrolled hub {config.hub.id} with {args.city_url}; wrote {path}")
    if args.no_check:
        return 0
    return _check_enrolment(config.hub.state_dir, config.hub.id)


def _check_enrolment(state_dir: Path, hub_id: str) -> int:
    """Try the enrolment on the city: 0 if it answers or cannot be reached, 1 if it says no."""
    from sync.enrolment import check_city
    from sync.errors import CityRejected, CityUnavailable

    try:
        answer = check_city(state_dir, hub_id)
    except CityUnavailable as exc:
        sys.stderr.write(
            f"hallhub: warning: could not reach the city to check the enrolment ({exc}); "
            "the hub keeps its events and syncs once the city can be reached\n"
        )
        return 0
    except CityRejected as exc:
        sys.stderr.write(f"hallhub: the city refused this hub's signed request: {exc}\n")
        return 1
    stored = sum(answer.get("events_stored", {}).values())
    print(f"checked: the city accepts this hub's signed requests ({stored} events stored)")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from sync.status_cli import fetch_status, read_token, render, resolve_quarantined

    url, token_file = args.url, args.token_file
    if args.config is not None:
        from hub.config import load_config

        config = load_config(args.config)
        console = config.console
        url = url or f"http://{console.host}:{console.port}"
        token_file = token_file or console.token_file or config.hub.state_dir / "api-token"
    if url is None or token_file is None:
        sys.stderr.write("hallhub: give --config, or --url with --token-file\n")
        return 2
    token = read_token(token_file)
    if args.sync_command == "resolve":
        entry = resolve_quarantined(url, token, args.lane, args.seq, args.resolution, args.by)
        print(f"quarantined {entry['lane']} seq {entry['seq']} resolved by {entry['resolved_by']}")
        return 0
    print(render(fetch_status(url, token), args.json))
    return 0


def _write_mqtt_acl(config_path: Path, out: Path | None) -> int:
    from devices.commissioning import commissioning_states
    from hub.config import load_config
    from hub.mqtt_auth import CREDENTIALS_FILE, plan_for, write_auth_files
    from rules.engine import RulesEngine, shipped_pack

    config = load_config(config_path)
    rules = RulesEngine.from_files([shipped_pack(), *config.rule_files])
    folder = out or config.hub.state_dir / "mqtt-auth"
    states = commissioning_states(config.hub.state_dir / "journal.sqlite3")
    accounts = write_auth_files(plan_for(config, rules.teams(), states), folder)
    sys.stdout.write(
        f"wrote {len(accounts)} MQTT accounts to {folder}; device passwords are in "
        f"{folder / CREDENTIALS_FILE} (mode 0600)\n"
    )
    return 0


def _add_modbus_fault_arguments(simulate: argparse.ArgumentParser) -> None:
    from devices.simulators.modbus_fault_switch import SWITCHES

    simulate.add_argument(
        "--modbus-fault",
        choices=sorted(SWITCHES),
        help="also run a people counter (pc-faulty) with this Modbus fault switched on and off",
    )
    simulate.add_argument(
        "--modbus-fault-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long the fault stays on, then off, in turn (default 10)",
    )
    simulate.add_argument(
        "--faulty-modbus-port",
        type=int,
        default=0,
        help="port of the faulty people counter on 127.0.0.1 (0 picks a free one)",
    )


async def _simulate(args: argparse.Namespace) -> int:
    from devices.simulators.hall import SimulatedHall
    from devices.simulators.modbus_fault_switch import start_fault_switch
    from devices.simulators.mqtt_faults import FaultSwitch, run_faults

    switches = [FaultSwitch.parse(text) for text in args.fault]
    hall = SimulatedHall(
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        topic_root=args.topic_root,
        publication_log=args.log,
        modbus_port=args.modbus_port,
    )
    faults = run_faults(hall.mqtt_devices, switches, hall.clock, args.fault_every)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await hall.start()
    faulty = await start_fault_switch(
        args.modbus_fault, args.modbus_fault_every, args.faulty_modbus_port
    )
    devices = hall.hub_devices_config() + ([faulty.devices_entry()] if faulty else [])
    sys.stdout.write("# devices section for the hall configuration:\n")
    sys.stdout.write(yaml.safe_dump({"devices": devices}, sort_keys=False))
    sys.stdout.write("# end of devices section\n")
    sys.stdout.flush()
    runner = asyncio.create_task(hall.run(), name="simulated-hall")
    faulting = asyncio.create_task(faults, name="simulated-faults")
    switching = asyncio.create_task(faulty.run(), name="modbus-faults") if faulty else None
    await stop.wait()
    faulting.cancel()
    await hall.stop()
    runner.cancel()
    if faulty is not None and switching is not None:
        switching.cancel()
        await faulty.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
