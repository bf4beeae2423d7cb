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
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
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
    simulate.add_argument(
        "--log",
        type=Path,
        default=Path("published.jsonl"),
        help="publication log: one line per message the broker acknowledged",
    )

    from hub.alerts.cli import add_parser as add_alerts_parser

    add_alerts_parser(commands)

    rules = commands.add_parser("rules", help="work with the hall's rules")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    replay = rule_commands.add_parser(
        "replay", help="preview a candidate rule set against journaled events (no side effects)"
    )
    replay.add_argument("--config", type=Path, required=True, metavar="FILE")
    replay.add_argument("--from", dest="start", required=True, metavar="DATE")
    replay.add_argument("--to", dest="end", required=True, metavar="DATE")
    replay.add_argument("--rules", type=Path, required=True, metavar="DIR")

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
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
    if args.command == "demo":
        from hub.demo import run_demo

        state_dir = args.state_dir or Path("var") / time.strftime("demo-%Y%m%d-%H%M%S")
        return asyncio.run(run_demo(args.duration, state_dir.resolve(), args.console_port))
    if args.command == "run":
        return asyncio.run(_run_hub(args.config))
    if args.command == "simulate":
        return asyncio.run(_simulate(args))
    if args.command == "alerts":
        from hub.alerts.cli import run as run_alerts_command

        return run_alerts_command(args)
    if args.command == "rules":
        return _rules_replay(args)
    raise AssertionError(f"unhandled command {args.command}")


def _rules_replay(args: argparse.Namespace) -> int:
    from rules.replay import preview_for_config

    report = preview_for_config(args.config, args.start, args.end, args.rules)
    sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    return 0


async def _run_hub(config_path: Path) -> int:
    from hub.config import load_config
    from hub.service import HubService

    service = HubService(load_config(config_path))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.request_stop)
    await service.run()
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from devices.simulators.hall import SimulatedHall

    hall = SimulatedHall(
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        topic_root=args.topic_root,
        publication_log=args.log,
        modbus_port=args.modbus_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await hall.start()
    sys.stdout.write("# devices section for the hall configuration:\n")
    sys.stdout.write(yaml.safe_dump({"devices": hall.hub_devices_config()}, sort_keys=False))
    sys.stdout.write("# end of devices section\n")
    sys.stdout.flush()
    runner = asyncio.create_task(hall.run(), name="simulated-hall")
    await stop.wait()
    await hall.stop()
    runner.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
