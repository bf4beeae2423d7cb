"""Loopback plumbing the benchmarks share: free ports, waiting for a server to answer."""

from __future__ import annotations

import socket
import time

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def wait_healthy(port: int, what: str, timeout: float = 30) -> None:
    """Wait until http://127.0.0.1:`port`/healthz answers 2xx; SystemExit naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{LOOPBACK}:{port}/healthz", timeout=1).is_success:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer on port {port} within {timeout:.0f} s")
