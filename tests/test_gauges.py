"""The sampled gauges: flash wear measured on a real SQLite write-ahead log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hub.gauges import WalMeter


def test_wal_meter_counts_appended_bytes_across_a_checkpoint(tmp_path: Path) -> None:
    """Bytes SQLite appends to the WAL are counted once each, and writing after a
    checkpoint that restarted the log is counted again, not lost as a shrink."""
    database = tmp_path / "journal.sqlite3"
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE events (body BLOB)")
    meter = WalMeter(database)
    meter.written_since_last()

    conn.execute("INSERT INTO events VALUES (?)", (b"x" * 50_000,))
    conn.commit()
    first = meter.written_since_last()
    unchanged = meter.written_since_last()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("INSERT INTO events VALUES (?)", (b"y" * 20_000,))
    conn.commit()
    after_checkpoint = meter.written_since_last()
    conn.close()

    assert first >= 50_000
    assert unchanged == 0
    assert after_checkpoint >= 20_000
