"""The operations commands: config check, install-service, backup, restore, bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hub.errors import HallhubError
from hub.ops.systemd import DEFAULT_EXECUTABLE, DEFAULT_UNIT_PATH, UnitSettings, render_unit

COMMANDS = frozenset({"config", "install-service", "backup", "restore", "bundle"})


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operations commands to the ``hallhub`` parser."""
    config = commands.add_parser("config", help="work with a hall configuration file")
    config_actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_actions.add_parser("check", help="validate a configuration without running it")
    check.add_argument("file", type=Path, metavar="FILE")

    unit = commands.add_parser("install-service", help="write the systemd unit of the hub")
    unit.add_argument("--config", type=Path, required=True, metavar="FILE")
    unit.add_argument("--output", type=Path, default=DEFAULT_UNIT_PATH, metavar="PATH")
    unit.add_argument("--dry-run", action="store_true", help="print the unit instead")
    unit.add_argument("--user", default="hallhub", help="unprivileged user to run as")
    unit.add_argument("--executable", type=Path, default=DEFAULT_EXECUTABLE)

    backup = commands.add_parser("backup", help="consistent copy of the journal, hub running")
    backup.add_argument("destination", type=Path, metavar="DEST")
    backup.add_argument("--config", type=Path, required=True, metavar="FILE")

    restore = commands.add_parser("restore", help="put a journal copy back (hub stopped)")
    restore.add_argument("source", type=Path, metavar="SRC")
    restore.add_argument("--config", type=Path, required=True, metavar="FILE")

    bundle = commands.add_parser("bundle", help="build the offline install bundle")
    bundle.add_argument("destination", type=Path, metavar="DEST")
    bundle.add_argument(
        "--no-debs", action="store_true", help="only the wheelhouse, no Debian packages"
    )


def run(args: argparse.Namespace) -> int:
    """Run one operations command; exit status."""
    if args.command == "config":
        return _check_config(args.file)
    if args.command == "install-service":
        return _install_service(args)
    if args.command == "backup":
        return _backup(args.config, args.destination)
    if args.command == "restore":
        return _restore(args.config, args.source)
    if args.command == "bundle":
        from hub.ops.bundle import build_bundle

        built = build_bundle(args.destination, with_debs=not args.no_debs)
        sys.stdout.write(f"offline bundle in {built}\n")
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def _check_config(path: Path) -> int:
    from hub.config import load_config
    from hub.service import HubService

    try:
        config = load_config(path)
        # Device models and rule layers are checked as the hub checks them at start.
        HubService(config)
    except (HallhubError, OSError) as exc:
        sys.stderr.write(f"hallhub: {exc}\n")
        return 1
    sys.stdout.write(f"{path}: ok (hub {config.hub.id}, {len(config.devices)} devices)\n")
    return 0


def _install_service(args: argparse.Namespace) -> int:
    from hub.config import load_config

    config = load_config(args.config)
    if not config.mqtt.managed:
        sys.stderr.write(
            "hallhub: note: mqtt.managed is false, so the unit uses the hall's own broker; "
            "set it to true to run Mosquitto with hallhub's production settings\n"
        )
    settings = UnitSettings(
        config=args.config.resolve(),
        executable=args.executable,
        user=args.user,
        state_dir=config.hub.state_dir,
        shutdown_timeout=config.operations.shutdown_timeout,
    )
    text = render_unit(settings)
    if args.dry_run:
        sys.stdout.write(text)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    sys.stdout.write(
        f"wrote {args.output}; then: useradd --system --groups dialout {args.user}, "
        "systemctl daemon-reload, systemctl enable --now hallhub\n"
    )
    return 0


def _backup(config_path: Path, destination: Path) -> int:
    from hub.config import load_config
    from hub.ops.backup import JOURNAL_FILE, copy_journal

    config = load_config(config_path)
    copy_journal(config.hub.state_dir / JOURNAL_FILE, destination)
    sys.stdout.write(f"journal copied to {destination} (integrity checked)\n")
    return 0


def _restore(config_path: Path, source: Path) -> int:
    from hub.config import load_config
    from hub.ops.backup import restore_journal

    config = load_config(config_path)
    try:
        restored = restore_journal(source, config.hub.state_dir, config.hub.id)
    except HallhubError as exc:
        sys.stderr.write(f"hallhub: restore refused: {exc}\n")
        return 1
    kept = f"; the replaced journal is kept as {restored.previous_journal}"
    sys.stdout.write(
        f"journal restored from {source}; new epoch {restored.new_epoch} "
        f"(was {restored.old_epoch}){kept if restored.previous_journal else ''}\n"
    )
    return 0
