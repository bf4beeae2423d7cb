"""Deltas of device counters that wrap or restart, and zone people counts.

A people counter reports running totals in a uint16 or uint32 register. The hub
needs what happened between two polls: across a wrap (65535 → 3 is 4 people) and
across a reboot (412 → 3 is 3 people, counted since the restart), never a jump of
65,000. A fall that a wrap cannot explain within `max_step` is taken as a restart.
"""

from __future__ import annotations

from dataclasses import dataclass


class CounterDelta:
    """Turns successive readings of one running counter into increments."""

    def __init__(self, bits: int, max_step: int | None = None) -> None:
        if bits not in (16, 32, 64):
            raise ValueError(f"counter width must be 16, 32 or 64 bits, not {bits}")
        self.modulus = 1 << bits
        self.max_step = max_step if max_step is not None else self.modulus // 2
        self._last: int | None = None
        self.restarts = 0

    def update(self, raw: int, *, rebooted: bool = False) -> int:
        """The increment since the last reading; 0 for the first one."""
        if not 0 <= raw < self.modulus:
            raise ValueError(f"counter reading {raw} is outside 0..{self.modulus - 1}")
        last, self._last = self._last, raw
        if last is None:
            return 0

        if rebooted:
            self.restarts += 1
            return raw
        if raw >= last:
            return raw - last
        wrapped = self.modulus - last + raw
        if wrapped <= self.max_step:
            return wrapped
        self.restarts += 1  # fell further than a wrap explains: the device restarted
        return raw


@dataclass
class ZoneOccupancy:
    """How many people are in a zone, from its doors' entry and exit increments."""

    count: int = 0
    clamped: int = 0  # exits the count could not take without going below zero

    def apply(self, entered: int, left: int) -> int:
        """Add entries, take exits, never below zero; returns the new count."""
        after = self.count + entered - left
        if after < 0:
            self.clamped += -after
            after = 0
        self.count = after
        return after

    def rezero(self) -> None:
        """Closing time: the hall is empty whatever the doors miscounted."""
        self.count = 0
