"""hallhub against the ThingsBoard IoT Gateway on one MQTT ingest-and-forward workload.

Both get the same workload from the same publisher: 500 occupancy sensors, each
publishing small JSON readings at QoS 1 to a Mosquitto of the bench's own (one
fresh broker per run, hallhub's broker settings). hallhub journals each reading
and forwards it to the reference city receiver over HTTP; the gateway takes it
with its MQTT connector, keeps it in its SQLite storage and forwards it to
"ThingsBoard", which here is the same broker with `bench.thingsboard_standin`
answering the gateway's session-limits request and counting what arrives.

It prints, per system, the readings delivered against those published (each
counted by its msg_id), the rate (published until the last reading arrived), the
CPU seconds and the peak resident memory of the hub or gateway process; and
hallhub's rate, CPU and memory as ratios of the gateway's.

    python -m bench.peer_thingsboard [--readings N] [--devices N] [--quick]

The gateway is installed by the bench into its own virtual environment
(``$XDG_CACHE_HOME/hallhub-bench/tb-venv``, default ``~/.cache``), never into
hallhub's. Its start-up posts to its vendor's update service, so the measured
runs happen in a network namespace of the bench's own with only loopback
(``unshare --net``, needs root): nothing of the gateway can leave the box.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from bench.loopback import LOOPBACK, free_port, wait_healthy
from bench.report import Row, emit
from bench.thingsboard_standin import ThingsBoardStandIn
from hub.broker import ManagedBroker
from hub.events import device_event_id
from sync.keys import add_key

GATEWAY_VERSION = "3.8.5"
HUB_ID = "hall-peer"
TOPIC_ROOT = "hall"
PUBLISHERS = 10
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hallhub-bench"
GATEWAY_VENV = CACHE / "tb-venv"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    """What one system did with the workload."""

    system: str
    published: int
    delivered: int
    duplicates: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


# -- set-up outside the namespace ------------------------------------------------------


def ensure_gateway_venv() -> Path:
    """The gateway's own virtualenv, created and filled on first use; its python."""
    python = GATEWAY_VENV / "bin" / "python"
    if python.exists():
        return python
    GATEWAY_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(GATEWAY_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"thingsboard-gateway=={GATEWAY_VERSION}"], check=True)
    return python


def reexec_isolated(argv: list[str]) -> int:
    """Run this bench again inside a new network namespace that has only loopback."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        sys.stderr.write("peer_thingsboard: needs root and unshare for its own network namespace\n")
        return 2
    inner = " ".join([sys.executable, "-m", "bench.peer_thingsboard", "--isolated", *argv])
    command = ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {inner}"]
    return subprocess.run(command, cwd=ROOT, check=False).returncode


# -- the workload -----------------------------------------------------------------------


def device_ids(count: int) -> list[str]:
    return [f"sensor-{n:03d}" for n in range(count)]


def publish_workload(port: int, devices: list[str], readings: int) -> list[tuple[str, str]]:
    """Every device publishes `readings` QoS 1 readings; (device, msg_id) of each PUBACKed."""
    shares = [devices[n::PUBLISHERS] for n in range(PUBLISHERS)]
    done: list[list[tuple[str, str]]] = [[] for _ in shares]
    threads = [
        threading.Thread(target=_publish_share, args=(port, n, share, readings, done[n]))
        for n, share in enumerate(shares)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [pair for part in done for pair in part]


def _publish_share(
    port: int, number: int, devices: list[str], readings: int, done: list[tuple[str, str]]
) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{number}")
    client.max_inflight_messages_set(100)
    client.connect(LOOPBACK, port)
    client.loop_start()
    sent = []
    for round_ in range(readings):
        for device in devices:
            msg_id = f"{device}-{round_}"
            body = {"msg_id": msg_id, "ts": time.time(), "occupancy": round_ % 60}
            info = client.publish(f"{TOPIC_ROOT}/{device}/count", json.dumps(body), qos=1)
            sent.append((info, device, msg_id))
    for info, device, msg_id in sent:
        info.wait_for_publish(timeout=120)
        if info.is_published():
            done.append((device, msg_id))
    client.disconnect()
    client.loop_stop()


def publish_probe(port: int, device: str, attempt: int) -> str:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe")
    client.connect(LOOPBACK, port)
    client.loop_start()
    msg_id = f"probe-{attempt}"
    body = {"msg_id": msg_id, "ts": time.time(), "occupancy": 0}
    client.publish(f"{TOPIC_ROOT}/{device}/count", json.dumps(body), qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    return msg_id


def wait_for_probe(port: int, device: str, arrived: Any, what: str) -> None:
    """Publish probes until one is delivered: the system's whole path is up."""
    deadline = time.monotonic() + 90
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        msg_id = publish_probe(port, device, attempt)
        wait_until = time.monotonic() + 3
        while time.monotonic() < wait_until:
            if arrived(msg_id):
                return
            time.sleep(0.1)
    raise SystemExit(f"{what} never delivered a probe reading")


def wait_delivered(count_delivered: Any, expected: int, stall: float = 30.0) -> float:
    """Wait until `expected` readings arrived or nothing new came for `stall` s; when."""
    last, last_change = -1, time.monotonic()
    finished = time.monotonic()
    while True:
        now = count_delivered()
        if now != last:
            last, last_change, finished = now, time.monotonic(), time.monotonic()
        if now >= expected or time.monotonic() - last_change > stall:
            return finished
        time.sleep(0.2)


# -- process figures --------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measured_run(
    system: str, pid: int, port: int, devices: list[str], readings: int, arrived_ids: Any
) -> Outcome:
    """Publish the workload and wait for it to arrive; the figures of process `pid`."""
    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    published = publish_workload(port, devices, readings)
    finished = wait_delivered(lambda: len(arrived_ids(published)[0]), len(published))
    cpu = cpu_seconds(pid) - cpu_before
    distinct, duplicates = arrived_ids(published)
    return Outcome(system, len(published), len(distinct), duplicates, finished - started, cpu,
                   peak_rss_mib(pid))  # fmt: skip


# -- hallhub ----------------------------------------------------------------------------


def run_hallhub(folder: Path, devices: list[str], readings: int) -> Outcome:
    broker = ManagedBroker(folder / "broker", LOOPBACK, free_port())
    broker.start()
    receiver_port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        config = write_hub_config(folder, broker.port, receiver_port, devices)
        processes.append(start_receiver(folder, receiver_port))
        hub = [sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "run", "--config"]
        processes.append(logged(folder / "hub.log", [*hub, str(config)]))
        city = folder / "city.sqlite3"

        def arrived_ids(published: list[tuple[str, str]]) -> tuple[set[str], int]:
            wanted = {device_event_id(device, msg_id) for device, msg_id in published}
            rows = read_ids(city, "SELECT event_id FROM events WHERE type = 'count'")
            return wanted & set(rows), len(rows) - len(set(rows))

        def probe_arrived(msg_id: str) -> bool:
            return device_event_id(devices[0], msg_id) in set(
                read_ids(city, "SELECT event_id FROM events WHERE type = 'count'")
            )

        wait_for_probe(broker.port, devices[0], probe_arrived, "hallhub")
        return measured_run("hallhub", processes[-1].pid, broker.port, devices, readings,
                            arrived_ids)  # fmt: skip
    finally:
        stop_all(processes)
        broker.stop()


def write_hub_config(
    folder: Path, broker_port: int, receiver_port: int, devices: list[str]
) -> Path:
    key = add_key(folder / "city-keys.json", HUB_ID)
    secret = folder / "state" / "city-secret"
    secret.parent.mkdir(parents=True)
    secret.write_text(key.secret.hex())
    secret.chmod(0o600)
    document = {
        "hub": {"id": HUB_ID, "state_dir": str(folder / "state"), "clock_sync": "assume"},
        "mqtt": {"host": LOOPBACK, "port": broker_port, "topic_root": TOPIC_ROOT},
        "console": {"host": LOOPBACK, "port": 0},
        "city": {"url": f"http://{LOOPBACK}:{receiver_port}", "key_id": key.key_id,
                 "secret_file": str(secret)},
        "devices": [{"id": device, "model": "occupancy-sensor-os1", "zone": "f1-waiting"}
                    for device in devices],
    }  # fmt: skip
    path = folder / "hallhub.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def start_receiver(folder: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "sync.receiver", "--db", str(folder / "city.sqlite3"),
               "--port", str(port), "--keys", str(folder / "city-keys.json"),
               "--log-level", "WARNING"]  # fmt: skip
    process = logged(folder / "receiver.log", command)
    wait_healthy(port, "the city receiver")
    return process


def read_ids(db: Path, sql: str) -> list[str]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute(sql)]
    except sqlite3.OperationalError:  # the receiver has not made its tables yet
        return []
    finally:
        conn.close()


# -- the ThingsBoard IoT Gateway --------------------------------------------------------


def run_gateway(folder: Path, python: Path, devices: list[str], readings: int) -> Outcome:
    broker = ManagedBroker(folder / "broker", LOOPBACK, free_port())
    broker.start()
    standin = ThingsBoardStandIn(LOOPBACK, broker.port)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        write_gateway_config(folder / "config", broker.port)
        (folder / "data").mkdir()
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "VIRTUAL_ENV")}  # fmt: skip
        env["TB_GW_CONFIG_DIR"] = str(folder / "config") + "/"
        command = [str(python), "-c", "from thingsboard_gateway.tb_gateway import main; main()"]
        gateway = logged(folder / "gateway.log", command, cwd=folder, env=env)

        def arrived_ids(published: list[tuple[str, str]]) -> tuple[set[str], int]:
            counts = standin.delivered()
            wanted = {msg_id for _device, msg_id in published}
            return wanted & set(counts), sum(n - 1 for n in counts.values() if n > 1)

        wait_for_probe(broker.port, devices[0], lambda m: m in standin.delivered(), "the gateway")
        return measured_run("gateway", gateway.pid, broker.port, devices, readings, arrived_ids)
    finally:
        stop_all([gateway] if gateway else [])
        standin.close()
        broker.stop()


def write_gateway_config(config: Path, broker_port: int) -> None:
    """The gateway's configuration: the bench's broker for both sides, SQLite storage."""
    config.mkdir(parents=True)
    uplink = {
        "host": LOOPBACK, "port": broker_port, "remoteShell": False,
        "remoteConfiguration": False, "statistics": {"enable": False},
        "security": {"type": "accessToken", "accessToken": "bench-gateway"}, "qos": 1,
        "reportStrategy": {"type": "ON_RECEIVED"},
    }  # fmt: skip
    storage = {"type": "sqlite", "data_file_path": "./data/", "messages_ttl_check_in_hours": 1,
               "messages_ttl_in_days": 7, "max_read_records_count": 100}  # fmt: skip
    connector = {"type": "mqtt", "name": "hall", "configuration": "hall.json"}
    general = {"thingsboard": uplink, "storage": storage, "grpc": {"enabled": False},
               "connectors": [connector]}  # fmt: skip
    (config / "tb_gateway.json").write_text(json.dumps(general, indent=2))
    (config / "hall.json").write_text(json.dumps(connector_config(broker_port), indent=2))
    (config / "logs.json").write_text(json.dumps(quiet_logging(), indent=2))


def connector_config(broker_port: int) -> dict[str, Any]:
    """The MQTT connector: one mapping, device name from the topic, two time series."""
    converter = {
        "type": "json",
        "deviceInfo": {"deviceNameExpressionSource": "topic",
                       "deviceNameExpression": f"(?<={TOPIC_ROOT}/)(.*?)(?=/count)",
                       "deviceProfileExpressionSource": "constant",
                       "deviceProfileExpression": "occupancy"},
        "sendDataOnlyOnChange": False,
        "timeout": 60000,
        "attributes": [],
        "timeseries": [{"type": "integer", "key": "occupancy", "value": "${occupancy}"},
                       {"type": "string", "key": "msg_id", "value": "${msg_id}"}],
    }  # fmt: skip
    broker = {"host": LOOPBACK, "port": broker_port, "clientId": "bench-tb-gateway",
              "version": 5, "maxMessageNumberPerWorker": 10, "maxNumberOfWorkers": 100,
              "cleanSession": False, "cleanStart": False, "sessionExpiryInterval": 3600,
              "security": {"type": "anonymous"}}  # fmt: skip
    mapping = {"topicFilter": f"{TOPIC_ROOT}/+/count", "subscriptionQos": 1, "converter": converter}
    return {"broker": broker, "mapping": [mapping]}


def quiet_logging() -> dict[str, Any]:
    """The gateway's own logging configuration, at WARNING, into its working folder."""
    shipped = GATEWAY_VENV.glob("lib/python3*/site-packages/thingsboard_gateway/config/logs.json")
    document: dict[str, Any] = json.loads(next(shipped).read_text())
    for handler in document.get("handlers", {}).values():
        handler["level"] = "WARNING"
    for logger in document.get("loggers", {}).values():
        logger["level"] = "WARNING"
    return document


# -- plumbing ---------------------------------------------------------------------------


def logged(
    log: Path, command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to all at once, then a SIGKILL for any still there after 30 s."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + 30
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def report(hub: Outcome, gateway: Outcome) -> None:
    for outcome in (hub, gateway):
        print(
            f"{outcome.system}: {outcome.delivered:,} of {outcome.published:,} readings delivered"
            f" ({outcome.duplicates} twice) in {outcome.seconds:.1f} s = {outcome.rate:,.0f}/s;"
            f" CPU {outcome.cpu_seconds:.1f} s; peak RSS {outcome.peak_rss_mib:.0f} MiB"
        )
    name = "peer_thingsboard"
    gateway_rate = gateway.rate or float("nan")
    emit(
        [
            Row(name, "hallhub delivered of published", hub.delivered, f"of {hub.published:,}",
                "all, once", hub.delivered == hub.published and hub.duplicates == 0),
            Row(name, "gateway delivered of published", gateway.delivered,
                f"of {gateway.published:,} ({gateway.duplicates} twice)", "informative", None),
            Row(name, "hallhub rate vs gateway", hub.rate / gateway_rate, "x gateway",
                "informative", None),
            Row(name, "hallhub CPU vs gateway", hub.cpu_seconds / gateway.cpu_seconds,
                "x gateway", "informative", None),
            Row(name, "hallhub peak RSS vs gateway", hub.peak_rss_mib / gateway.peak_rss_mib,
                "x gateway", "informative", None),
        ]
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--readings", type=int, default=20, help="readings per device")
    parser.add_argument("--quick", action="store_true", help="4 readings per device")
    parser.add_argument("--isolated", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.readings = 4

    if not args.isolated:
        ensure_gateway_venv()
        return reexec_isolated(sys.argv[1:])

    devices = device_ids(args.devices)
    with tempfile.TemporaryDirectory(prefix="hallhub-peer-") as name:
        folder = Path(name)
        (folder / "hallhub").mkdir()
        (folder / "gateway").mkdir()
        hub = run_hallhub(folder / "hallhub", devices, args.readings)
        gateway = run_gateway(folder / "gateway", GATEWAY_VENV / "bin" / "python", devices,
                              args.readings)  # fmt: skip
        report(hub, gateway)
    return 0


if __name__ == "__main__":
    sys.exit(main())
