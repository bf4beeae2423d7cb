"""What a Modbus model derives from raw register values: counter deltas, a zone's
people count, and edge events such as a toilet alarm's call and reset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from devices.counters import CounterDelta, ZoneOccupancy
from devices.profiles import ModbusSpec
from devices.registers import RegisterValue, word_count
from hub.events import Lane

logger = logging.getLogger(__name__)

OpenHours = Callable[[float], bool]  # wall time -> is the hall open


@dataclass(frozen=True, slots=True)
class EdgeEvent:
    """A bool register turned on or off: the event the model names for it."""

    message: str
    lane: Lane


class Derivations:
    """Keeps the state derivations need between polls of one unit."""

    def __init__(self, device_id: str, spec: ModbusSpec, is_open: OpenHours | None) -> None:
        self.device_id = device_id
        self.spec = spec
        self.zone = ZoneOccupancy()
        self._deltas = {
            r.name: CounterDelta(16 * word_count(r)) for r in spec.registers if r.counter
        }
        self._is_open = is_open
        self._was_open: bool | None = None
        self._last_edges: dict[str, bool] = {}

    def values(self, raw: dict[str, RegisterValue], wall: float) -> dict[str, RegisterValue]:
        """Counter deltas (``<name>_delta``) and the zone count, from one poll's values."""
        derived: dict[str, RegisterValue] = {}
        for name, delta in self._deltas.items():
            total = raw.get(name)
            if isinstance(total, int):
                derived[f"{name}_delta"] = delta.update(total)

        self._rezero_if_closed(wall)
        zone = self.spec.zone_count
        if zone is not None:
            entered = int(derived.get(f"{zone.entered}_delta", 0))
            left = int(derived.get(f"{zone.left}_delta", 0))
            derived[zone.value] = self.zone.apply(entered, left)
        return derived

    def edges(self, raw: dict[str, RegisterValue]) -> list[EdgeEvent]:
        """The events of the bool registers that changed since the last poll."""
        events: list[EdgeEvent] = []
        for edge in self.spec.edges:
            now = bool(raw.get(edge.input))
            before = self._last_edges.get(edge.input)
            self._last_edges[edge.input] = now
            # A call found latched at the first poll is reported: it may have been
            # pulled while the hub was down, and a repeated call only refreshes the
            # open alert. An input found off at the first poll says nothing.
            if before == now or (before is None and not now):
                continue
            message = edge.rising if now else edge.falling
            if message is not None:
                events.append(EdgeEvent(message, edge.lane))
        return events

    def rezero_zone(self) -> None:
        """Closing time: nobody is left inside, whatever the doors miscounted."""
        if self.zone.count:
            logger.info("%s: zone re-zeroed from %d at closing", self.device_id, self.zone.count)
        self.zone.rezero()

    def _rezero_if_closed(self, wall: float) -> None:
        if self._is_open is None or self.spec.zone_count is None:
            return
        is_open = self._is_open(wall)
        if self._was_open and not is_open:
            self.rezero_zone()
        self._was_open = is_open
