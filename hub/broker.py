"""The hall's MQTT broker: Mosquitto, run by the hub as a managed child process.

The hub writes ``mosquitto.conf`` into a state folder it owns and runs Mosquitto on
it. The broker keeps its queue (``mosquitto.db``) and its log there too.

Mosquitto runs in its own session, not as part of the hub's process group: when the
hub crashes or gets Ctrl-C, the broker keeps running and keeps queueing what the
devices publish, and the hub's persistent session picks the queue up when it comes
back. The next `ManagedBroker.start()` on the same state folder stops that
left-over broker gracefully (so it saves its queue) and starts its own child.

Only when no ``mosquitto`` binary exists does `start_broker()` fall back to an
in-process amqtt broker. That broker's queue lives in the hub's memory and dies with
it, speaks MQTT 3.1.1 only, and keeps nothing across restarts.

Without an auth folder the broker accepts anonymous clients (``allow_anonymous
true``): any process that can reach its port can publish as a device or read every
topic, so the listener is refused on wildcard addresses and a non-loopback address
is logged as a warning. With the folder `hallhub mqtt-acl` writes, each client needs
its password and keeps to its ACL (see hub/mqtt_auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from hub.errors import BrokerError
from hub.mqtt_auth import ACL_FILE, PASSWORD_FILE

logger = logging.getLogger(__name__)

MOSQUITTO_FALLBACK_PATH = "/usr/sbin/mosquitto"
CONFIG_FILE = "mosquitto.conf"
LOG_FILE = "mosquitto.log"
# Mosquitto writes errors found before its log file is open (bad config, unreadable
# database) to stderr only, so stdout and stderr go to this file.
OUTPUT_FILE = "mosquitto.out"
PID_FILE = "mosquitto.pid"
LOG_TAIL_LINES = 20
START_TIMEOUT = 10.0

# Mosquitto's defaults keep 1000 queued QoS 1/2 messages per client and then drop the
# rest silently. The hub's ingest session must outlast a hub restart or crash while
# devices keep publishing: at 5 messages a second, 200 000 is about 11 hours.
MAX_QUEUED_MESSAGES = 200_000
# Only a guard against memory exhaustion on a small box by oversized payloads: hall
# payloads are small JSON (< 1 kB), so 200 000 of them stay under this and the
# message count above is the limit that binds. Mosquitto counts payload bytes.
MAX_QUEUED_BYTES = 256 * 1024 * 1024
# No device payload may exceed this (device models allow at most 256 KiB). Without
# it, one oversized publish could fill the hub session's byte quota and make the
# broker drop the messages queued behind it, after acknowledging them to devices.
MESSAGE_SIZE_LIMIT = 256 * 1024
# Default 20. More messages in flight to the hub lets the journal commit them in
# larger groups; the hub acknowledges each one only after its commit.
MAX_INFLIGHT_MESSAGES = 100
# Mosquitto saves its in-memory queue on a clean stop; otherwise only every
# autosave interval (default 1800 s). If the broker itself is killed or the power
# fails, at most the last 10 s of queue changes are lost.
AUTOSAVE_INTERVAL = 10
# Persistent sessions of clients that never come back (a retired device, a random
# client id) are dropped after a week instead of queueing forever.
PERSISTENT_CLIENT_EXPIRATION = "7d"

_RUNNING_LINE = re.compile(r"mosquitto version \S+ running")


class Broker(Protocol):
    """What the hub needs from whichever broker it runs."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    @property
    def supports_mqtt5(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 10) -> None: ...


def find_mosquitto() -> str | None:
    """The path of the mosquitto binary: on PATH, else Debian's /usr/sbin, else None."""
    on_path = shutil.which("mosquitto")
    if on_path is not None:
        return on_path
    if os.access(MOSQUITTO_FALLBACK_PATH, os.X_OK):
        return MOSQUITTO_FALLBACK_PATH
    return None


def amqtt_available() -> bool:
    """Whether the optional in-process fallback broker (amqtt) is installed."""
    return importlib.util.find_spec("amqtt") is not None


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def format_url(host: str, port: int) -> str:
    """An ``mqtt://`` URL for `host` and `port`, bracketing IPv6 addresses."""
    shown = f"[{host}]" if ":" in host else host
    return f"mqtt://{shown}:{port}"


def check_listen_host(host: str) -> None:
    """Refuse a wildcard address; warn about a non-loopback one (no auth yet)."""
    if not host or "\n" in host:
        raise BrokerError(f"invalid broker host {host!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            logger.warning("broker host %s is not loopback; it accepts anonymous clients", host)
        return

    if address.is_unspecified:
        raise BrokerError(
            f"refusing to listen on {host}: the broker accepts anonymous clients, "
            "so give the address of one interface"
        )
    if not address.is_loopback:
        logger.warning("broker on %s accepts anonymous clients from that network", host)


def render_config(
    state_dir: Path,
    host: str,
    port: int,
    user: str,
    autosave_interval: int = AUTOSAVE_INTERVAL,
    auth_dir: Path | None = None,
) -> str:
    """The mosquitto.conf hallhub runs the broker with.

    With `auth_dir` (written by `hallhub mqtt-acl`), every client needs a password
    and may only use the topics its ACL grants.
    """
    location = f"{state_dir}{os.sep}"
    if auth_dir is None:
        access = ["allow_anonymous true"]
    else:
        access = [
            "allow_anonymous false",
            f"password_file {auth_dir / PASSWORD_FILE}",
            f"acl_file {auth_dir / ACL_FILE}",
        ]
    lines = [
        "# Written by hallhub at each broker start; edits here are overwritten.",
        f"listener {port} {host}",
        *access,
        # Run as the hub's own user, who owns the state folder; as root, Mosquitto
        # would otherwise switch to 'mosquitto' and fail to write its files.
        f"user {user}",
        "persistence true",
        f"persistence_location {location}",
        f"autosave_interval {autosave_interval}",
        "autosave_on_changes false",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        f"message_size_limit {MESSAGE_SIZE_LIMIT}",
        f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
        f"persistent_client_expiration {PERSISTENT_CLIENT_EXPIRATION}",
        f"pid_file {state_dir / PID_FILE}",
        f"log_dest file {state_dir / LOG_FILE}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "set_tcp_nodelay true",
    ]
    return "\n".join(lines) + "\n"


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _process_args(pid: int) -> list[bytes]:
    """The command line of a process; a zombie's is empty."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


class ManagedBroker:
    """Mosquitto run as a child process on a state folder the hub owns.

    `start()` blocks until the broker accepts connections (well under a second
    normally); an asyncio caller runs it in a thread.
    """

    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        autosave_interval: int = AUTOSAVE_INTERVAL,
        auth_dir: Path | None = None,
    ) -> None:
        check_listen_host(host)
        self._autosave_interval = autosave_interval
        self._auth_dir = Path(auth_dir).absolute() if auth_dir is not None else None
        self._state_dir = Path(state_dir).absolute()
        self._host = host
        self._port = port if port is not None else pick_free_port(host)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offsets = (0, 0)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return format_url(self._host, self._port)

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def supports_mqtt5(self) -> bool:
        return True

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def config_path(self) -> Path:
        return self._state_dir / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self._state_dir / LOG_FILE

    # -- lifecycle -----------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Write the config, start Mosquitto and wait until it accepts connections."""
        if self.running:
            return
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto not found: install the 'mosquitto' package")

        self._write_config()
        self._stop_leftover(timeout)
        process = self._spawn(binary)
        self._process = process
        self._wait_until_ready(process, timeout)

        logger.info(
            "mosquitto (pid %d) listening on %s, state in %s",
            process.pid,
            self.url,
            self._state_dir,
        )

    def stop(self, timeout: float = 10) -> None:
        """Stop gracefully (SIGTERM), so Mosquitto saves its queue; SIGKILL on timeout."""
        process = self._process
        if process is None:
            return
        if process.poll() is not None:
            logger.warning("mosquitto had already exited with code %s", process.returncode)
            self._process = None
            return

        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "mosquitto (pid %d) ignored SIGTERM for %ss; killing", process.pid, timeout
            )
            process.kill()
            process.wait()

        self._process = None
        logger.info("mosquitto stopped (exit code %s)", process.returncode)

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crash would: unsaved queue changes are lost."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._process = None
        logger.info("mosquitto (pid %d) killed", process.pid)

    def restart(self) -> None:
        """Stop gracefully, then start again on the same port and state folder."""
        self.stop()
        self.start()

    # -- steps of start ------------------------------------------------------------

    def _write_config(self) -> None:
        user = pwd.getpwuid(os.geteuid()).pw_name
        text = render_config(
            self._state_dir, self._host, self._port, user, self._autosave_interval, self._auth_dir
        )
        try:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise BrokerError(
                f"cannot write the broker config in {self._state_dir}: {exc}"
            ) from exc

    def _stop_leftover(self, timeout: float) -> None:
        """Stop a broker an earlier hub left running on this state folder."""
        try:
            pid = int((self._state_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return
        if not self._is_our_broker(pid):
            return  # a stale file: that broker is gone, or its pid now names another

        logger.warning("stopping mosquitto (pid %d) left running by an earlier hub", pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while self._is_our_broker(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self._is_our_broker(pid):
                return
        raise BrokerError(f"mosquitto (pid {pid}) left by an earlier hub would not stop")

    def _is_our_broker(self, pid: int) -> bool:
        """Whether `pid` is a live Mosquitto running this broker's config."""
        return str(self.config_path).encode() in _process_args(pid)

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        output_path = self._state_dir / OUTPUT_FILE
        self._log_offsets = (_file_size(self.log_path), _file_size(output_path))
        try:
            with output_path.open("ab") as output:
                # Own session: a signal to the hub's process group (Ctrl-C) or the
                # hub's death leaves the broker and its queue alone.
                return subprocess.Popen(
                    [binary, "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise BrokerError(f"cannot run {binary}: {exc}") from exc

    def _wait_until_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait for Mosquitto to log that it runs and to accept a connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                self._process = None
                raise BrokerError(
                    f"mosquitto exited with code {code} while starting", self.log_tail()
                )
            if _RUNNING_LINE.search(self._new_log()) and self._accepts_connections():
                return
            time.sleep(0.02)

        self.kill()
        raise BrokerError(
            f"mosquitto did not accept connections within {timeout}s", self.log_tail()
        )

    def _new_log(self) -> str:
        return _read_from(self.log_path, self._log_offsets[0])

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self._host, self._port), timeout=0.5):
                return True
        except OSError:
            return False

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the broker wrote since its last start (log, then stderr)."""
        output = _read_from(self._state_dir / OUTPUT_FILE, self._log_offsets[1])
        text = self._new_log() + output
        return "\n".join(text.splitlines()[-lines:])


class InProcessBroker:
    """An amqtt broker on its own event-loop thread: the fallback without Mosquitto.

    Its queue lives in this process: a hub crash loses it. MQTT 3.1.1 only.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        check_listen_host(host)
        self._host = host
        self._port = port if port is not None else pick_free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return format_url(self._host, self._port)

    @property
    def running(self) -> bool:
        return self._broker is not None

    @property
    def supports_mqtt5(self) -> bool:
        return False

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start amqtt on a new event-loop thread and wait until it listens."""
        if self.running:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="amqtt-broker", daemon=True)
        thread.start()

        future = asyncio.run_coroutine_threadsafe(self._start_amqtt(), loop)
        try:
            self._broker = future.result(timeout)
        except Exception as exc:
            _stop_loop(loop, thread)
            raise BrokerError(f"in-process broker failed to start on {self.url}: {exc}") from exc

        self._loop, self._thread = loop, thread
        logger.info("in-process amqtt broker listening on %s", self.url)

    def stop(self, timeout: float = 10) -> None:
        """Shut amqtt down and end its thread; its queue is gone."""
        if self._loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(timeout)
        except Exception as exc:
            raise BrokerError(f"in-process broker failed to stop: {exc}") from exc
        finally:
            _stop_loop(self._loop, self._thread)
            self._loop, self._thread, self._broker = None, None, None
        logger.info("in-process amqtt broker stopped")

    async def _start_amqtt(self) -> Any:
        from amqtt.broker import Broker as AmqttBroker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self._host}:{self._port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        broker = AmqttBroker(config)
        await broker.start()
        return broker


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def start_broker(state_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> Broker:
    """Start Mosquitto on `state_dir`; without it, the in-process fallback."""
    broker: Broker
    if find_mosquitto() is not None:
        broker = ManagedBroker(state_dir, host, port)
    elif amqtt_available():
        logger.warning(
            "mosquitto not found: running the in-process amqtt broker; crash guarantees do "
            "not hold, as its queue dies with the hub. Install the 'mosquitto' package."
        )
        broker = InProcessBroker(host, port)
    else:
        raise BrokerError(
            "mosquitto not found: install the 'mosquitto' package "
            "(or, as a last resort, hallhub[fallback-broker])"
        )

    broker.start()
    return broker
