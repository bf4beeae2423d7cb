"""The ``hallhub`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

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
        "--log",
        type=Path,
        default=Path("published.jsonl"),
        help="publication log: one line per message the broker acknowledged",
    )

    receiver = commands.add_parser("city-receiver", help="run the reference city receiver")
    receiver.add_argument(
        "args", nargs=argparse.REMAINDER, help="--db FILE --port N --keys FILE [--host ADDR]"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pymodbus logs every failed connect and timeout itself, with packet dumps; the
    # poller already logs each outage once and its recovery, so keep pymodbus quiet.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
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
    if args.command == "mqtt-acl":
        return _write_mqtt_acl(args.config, args.out)
    if args.command == "simulate":
        return asyncio.run(_simulate(args))
    if args.command == "city-receiver":
        from sync.receiver import main as receiver_main

        return receiver_main(args.args)
    raise AssertionError(f"unhandled command {args.command}")


async def _run_hub(config_path: Path) -> int:
    from hub.config import load_config
    from hub.service import HubService

    service = HubService(load_config(config_path))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.request_stop)
    await service.run()
    return 0


def _write_mqtt_acl(config_path: Path, out: Path | None) -> int:
    from hub.config import load_config
    from hub.mqtt_auth import CREDENTIALS_FILE, plan_for, write_auth_files
    from rules.engine import RulesEngine, shipped_pack

    config = load_config(config_path)
    rules = RulesEngine.from_files([shipped_pack(), *config.rule_files])
    folder = out or config.hub.state_dir / "mqtt-auth"
    accounts = write_auth_files(plan_for(config, rules.teams()), folder)
    sys.stdout.write(
        f"wrote {len(accounts)} MQTT accounts to {folder}; device passwords are in "
        f"{folder / CREDENTIALS_FILE} (mode 0600)\n"
    )
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from devices.simulators.hall import SimulatedHall

    hall = SimulatedHall(
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        topic_root=args.topic_root,
        publication_log=args.log,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await hall.start()
    runner = asyncio.create_task(hall.run(), name="simulated-hall")
    await stop.wait()
    await hall.stop()
    runner.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
