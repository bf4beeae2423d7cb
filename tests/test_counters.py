"""Counter deltas across wraps and reboots, and zone counts that never go negative."""

from __future__ import annotations

import pytest

from devices.counters import CounterDelta, ZoneOccupancy


def test_uint16_wrap_gives_the_small_true_delta() -> None:
    """65530 then 3 on a uint16 counter means 9 people, not a negative or huge jump."""
    counter = CounterDelta(16)
    assert counter.update(65530) == 0
    assert counter.update(3) == 9
    assert counter.restarts == 0


def test_uint32_wrap_gives_the_small_true_delta() -> None:
    """A uint32 counter wrapping past 2**32 - 1 continues the count."""
    counter = CounterDelta(32)
    counter.update(2**32 - 2)
    assert counter.update(5) == 7


def test_reboot_reset_counts_from_zero() -> None:
    """A counter that falls from 412 to 3 restarted: 3 people since the reboot."""
    counter = CounterDelta(16)
    counter.update(400)
    assert counter.update(412) == 12
    assert counter.update(3) == 3
    assert counter.restarts == 1


def test_reported_reboot_counts_from_zero_even_when_it_looks_like_a_wrap() -> None:
    """When the device says it rebooted, the new reading is the delta."""
    counter = CounterDelta(16)
    counter.update(65530)
    assert counter.update(2, rebooted=True) == 2


def test_reading_outside_the_register_width_is_refused() -> None:
    """A value a uint16 register cannot hold is an error, not a delta."""
    with pytest.raises(ValueError, match="outside"):
        CounterDelta(16).update(70000)


def test_people_count_never_below_zero_and_rezeroes_at_closing() -> None:
    """More exits than entries stop at zero (and are counted); closing empties the zone."""
    zone = ZoneOccupancy()
    assert zone.apply(entered=3, left=1) == 2
    assert zone.apply(entered=0, left=5) == 0
    assert zone.clamped == 3
    zone.apply(entered=4, left=0)
    zone.rezero()
    assert zone.count == 0
