"""Sampling the hub's state into the Prometheus gauges, once per health check.

Counters are updated where things happen; these figures are states (devices online,
sync backlog and lag) or need a look at the disk (bytes the journal wrote), so the
hub's health watch samples them here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hub import metrics
from sync.outbox import pending_lags

if TYPE_CHECKING:
    from hub.service import HubService

logger = logging.getLogger(__name__)


class WalMeter:
    """Counts bytes appended to a SQLite write-ahead log between two looks.

    SQLite writes every changed page to the WAL before checkpointing it into the
    database; WAL growth is therefore what the hub wears the flash by. When a
    checkpoint restarts the log from its start, the whole new length is new writing.
    """

    def __init__(self, database: Path) -> None:
        self._wal = database.with_name(database.name + "-wal")
        self._seen = self._size()

    def written_since_last(self) -> int:
        """Bytes appended since the previous call."""
        size = self._size()
        grown = size - self._seen if size >= self._seen else size
        self._seen = size
        return grown

    def _size(self) -> int:
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0


def sample(service: HubService, wal: WalMeter) -> None:
    """Set every sampled gauge from the running hub."""
    metrics.DEVICES_ONLINE.set(service.registry.online_count())
    metrics.SQLITE_WRITTEN.inc(wal.written_since_last())
    if service.uplink is None:
        return

    for lane, row in service.uplink.status().items():
        metrics.SYNC_BACKLOG.labels(lane).set(row["backlog"])
    with service.journal.reading() as conn:
        lags = pending_lags(conn, service.clock.wall())
    for lane, lag in lags.items():
        metrics.SYNC_LAG.labels(lane).set(lag or 0.0)
