"""Rule states in SQLite: a timer survives a reboot with the time it had left."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rules import store


def test_timer_from_an_earlier_boot_resumes_with_the_time_it_had_left(tmp_path: Path) -> None:
    """Saved at monotonic 5000 with 200 s to go; after a reboot (clock at 30) it is due at 230."""
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    store.create_tables(conn)
    state = {"holds": True, "fired": False, "deadline": 5200.0}
    store.save(conn, [], {("crowding", "zone"): state}, 1.0, 5000.0, "boot-a")
    same_boot = store.load_states(conn, "boot-a", 5100.0)
    after_reboot = store.load_states(conn, "boot-b", 30.0)
    conn.close()
    assert same_boot[("crowding", "zone")]["deadline"] == 5200.0
    assert after_reboot[("crowding", "zone")]["deadline"] == 230.0
