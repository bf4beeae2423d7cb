"""Serial lines for tests: two linked pseudo-terminals made by socat."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def pty_pair(
    folder: Path, ends: tuple[str, str] = ("ttyHUB", "ttyDEVICE")
) -> Iterator[tuple[str, str]]:
    """Yield the paths of two linked pseudo-terminals (hub end, device end).

    socat can sit in a blocked write when neither end is read any more and then
    ignore SIGTERM for a while; it is killed outright after a short grace, so a
    test never fails on its own clean-up.
    """
    hub_end, device_end = folder / ends[0], folder / ends[1]
    socat = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={hub_end}", f"pty,raw,echo=0,link={device_end}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not (hub_end.exists() and device_end.exists()):
            assert time.monotonic() < deadline, "socat did not create the pty pair"
            time.sleep(0.02)
        yield str(hub_end), str(device_end)
    finally:
        _stop(socat)


def _stop(socat: subprocess.Popen[bytes]) -> None:
    socat.terminate()
    try:
        socat.wait(timeout=2)
    except subprocess.TimeoutExpired:
        socat.kill()
        socat.wait(timeout=5)
