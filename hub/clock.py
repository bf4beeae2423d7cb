"""Clocks: the one place hallhub reads time, so tests can drive it.

Every timeout, schedule and retry in hallhub asks a `Clock`. Production code gets
`SystemClock`; tests get `ManualClock` and advance it by hand, compressing hours
into milliseconds without sleeping.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import logging
import time
from typing import Literal, Protocol

logger = logging.getLogger(__name__)

SyncPolicy = Literal["system", "assume", "never"]

# adjtimex(2) returns TIME_ERROR while the kernel considers the clock unsynchronised.
_TIME_ERROR = 5


class Clock(Protocol):
    """What hallhub needs to know about time."""

    def wall(self) -> float:
        """Seconds since the Unix epoch, as the box believes (may jump)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences mean anything."""
        ...

    def is_synchronised(self) -> bool:
        """Whether the wall clock has been set from a trusted source."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of monotonic time."""
        ...


def kernel_reports_synchronised() -> bool:
    """Ask the kernel (adjtimex) whether NTP or PTP has synchronised the clock."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    timex = ctypes.create_string_buffer(512)  # larger than struct timex; modes=0 reads
    state = libc.adjtimex(timex)
    return state not in (-1, _TIME_ERROR)


class SystemClock:
    """The real clocks of the box."""

    def __init__(self, sync_policy: SyncPolicy = "system") -> None:
        self._sync_policy = sync_policy

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def is_synchronised(self) -> bool:
        if self._sync_policy == "assume":
            return True
        if self._sync_policy == "never":
            return False
        return kernel_reports_synchronised()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when a test says so.

    `advance()` moves both clocks and wakes every sleeper whose deadline has passed,
    in deadline order. `jump_wall()` moves only the wall clock, as an NTP step or a
    box booting with a wrong date would.
    """

    def __init__(self, wall: float = 1_767_225_600.0, synchronised: bool = True) -> None:
        self._wall = wall
        self._monotonic = 1000.0
        self.synchronised = synchronised
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def is_synchronised(self) -> bool:
        return self.synchronised

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._monotonic + seconds, next(self._order), waiter))
        await waiter

    def jump_wall(self, seconds: float) -> None:
        self._wall += seconds

    async def advance(self, seconds: float) -> None:
        """Move time forward, letting each woken sleeper run before the next wakes."""
        target = self._monotonic + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, waiter = heapq.heappop(self._sleepers)
            self._wall += deadline - self._monotonic
            self._monotonic = deadline
            if not waiter.done():
                waiter.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._wall += target - self._monotonic
        self._monotonic = target
        await asyncio.sleep(0)
