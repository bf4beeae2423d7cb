"""The receiver's watch for hubs that have gone quiet.

Every signed request a hub makes (a batch, a status read, a command poll) counts as
contact. A hub known by its key and not heard from for `silent_after` seconds is
silent: logged once at WARNING when it falls silent and at INFO when it returns,
and shown by ``GET /admin/hubs``. A hub never heard from since the receiver started
counts from the start, or from the last batch its store remembers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hub.clock import Clock

logger = logging.getLogger(__name__)

DEFAULT_SILENT_AFTER = 15 * 60.0


class SilenceWatch:
    """Last contact per hub, and which hubs are silent."""

    def __init__(
        self,
        known_hubs: Callable[[], Iterable[str]],
        clock: Clock,
        silent_after: float = DEFAULT_SILENT_AFTER,
        remembered: Mapping[str, float] | None = None,
    ) -> None:
        self._known_hubs = known_hubs
        self._clock = clock
        self._silent_after = silent_after
        self._started_at = clock.wall()
        self._last_contact: dict[str, float] = dict(remembered or {})
        self._silent: set[str] = set()

    def contact(self, hub_id: str) -> None:
        """Record that `hub_id` was just heard from."""
        self._last_contact[hub_id] = self._clock.wall()
        if hub_id in self._silent:
            self._silent.discard(hub_id)
            logger.info("hub %s is heard from again", hub_id)

    def check(self) -> list[dict[str, Any]]:
        """Each known hub's last contact and silence; logs hubs that just fell silent."""
        now = self._clock.wall()
        report: list[dict[str, Any]] = []
        for hub_id in sorted(set(self._known_hubs()) | set(self._last_contact)):
            last = self._last_contact.get(hub_id)
            quiet_for = now - (last if last is not None else self._started_at)
            silent = quiet_for >= self._silent_after
            if silent and hub_id not in self._silent:
                self._silent.add(hub_id)
                logger.warning("hub %s silent for %.0f minutes", hub_id, quiet_for / 60)
            report.append(
                {
                    "hub_id": hub_id,
                    "last_contact": last,
                    "quiet_seconds": round(quiet_for, 1),
                    "silent": silent,
                }
            )
        return report
