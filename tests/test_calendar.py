"""The hall calendar on real 2025 and 2026 dates, make-up workdays (调休) included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub.calendar import (
    CalendarError,
    DayType,
    HallCalendar,
    layered_settings,
    load_calendar_settings,
)
from hub.clock import ManualClock
from hub.errors import ConfigError

D = dt.date.fromisoformat
SHANGHAI_2026_12_04_10H = 1_796_349_600.0  # 2026-12-04 10:00 Asia/Shanghai
SHANGHAI_2026_11_20_10H = 1_795_140_000.0

OVERRIDES = """\
saturday:
  opens: "09:00"
  closes: "12:00"
weekday:
  opens: "09:00"
  closes: "17:00"
  midday: {start: "12:00", end: "13:30"}
  midday_service: false
years:
  2027:
    holidays: [2027-01-01, 2027-02-08, 2027-02-09]
    makeup_workdays: [2027-02-06]
closures:
  - date: 2026-12-24
    reason: floor renovation
"""


@pytest.fixture
def hall(tmp_path: Path) -> HallCalendar:
    path = tmp_path / "calendar.yaml"
    path.write_text(OVERRIDES, encoding="utf-8")
    return HallCalendar(load_calendar_settings(path))


def test_day_types_of_2025_follow_the_published_table() -> None:
    """Spring Festival and National Day 2025: holidays, and the weekends worked for them."""
    calendar = HallCalendar()
    assert calendar.day_type(D("2025-01-26")) == DayType.MAKEUP_WORKDAY  # a Sunday
    assert calendar.day_type(D("2025-02-08")) == DayType.MAKEUP_WORKDAY  # a Saturday
    assert calendar.day_type(D("2025-01-29")) == DayType.PUBLIC_HOLIDAY
    for day in range(1, 9):
        assert calendar.day_type(dt.date(2025, 10, day)) == DayType.PUBLIC_HOLIDAY
    assert calendar.day_type(D("2025-10-11")) == DayType.MAKEUP_WORKDAY
    assert calendar.day_type(D("2025-10-12")) == DayType.WEEKEND
    assert calendar.day_type(D("2025-10-09")) == DayType.WORKING_DAY


def test_day_types_of_2026_follow_the_published_table() -> None:
    """2026: New Year's make-up Sunday, Spring Festival's two make-up Saturdays."""
    calendar = HallCalendar()
    assert calendar.day_type(D("2026-01-01")) == DayType.PUBLIC_HOLIDAY
    assert calendar.day_type(D("2026-01-04")) == DayType.MAKEUP_WORKDAY
    assert calendar.day_type(D("2026-02-14")) == DayType.MAKEUP_WORKDAY
    assert calendar.day_type(D("2026-02-23")) == DayType.PUBLIC_HOLIDAY  # a Monday
    assert calendar.day_type(D("2026-02-28")) == DayType.MAKEUP_WORKDAY
    assert calendar.day_type(D("2026-10-10")) == DayType.MAKEUP_WORKDAY


def test_saturday_service_only_on_ordinary_saturdays(hall: HallCalendar) -> None:
    """Saturday hours on a plain Saturday; closed on a holiday Saturday; weekday hours on 调休."""
    plain = hall.hours(D("2025-10-18"))
    holiday = hall.hours(D("2025-10-04"))
    makeup = hall.hours(D("2025-10-11"))
    assert plain is not None and plain.closes == dt.time(12)
    assert holiday is None
    assert makeup is not None and makeup.closes == dt.time(17)
    assert hall.is_open(dt.datetime(2025, 10, 11, 15, 0))
    assert not hall.is_open(dt.datetime(2025, 10, 18, 15, 0))
    assert hall.hours(D("2025-10-19")) is None  # Sunday


def test_midday_window_closed_when_not_served(hall: HallCalendar) -> None:
    """With midday service off, 12:30 on a working day is closed and 13:30 is open."""
    assert hall.is_open(dt.datetime(2026, 3, 2, 11, 59))
    assert not hall.is_open(dt.datetime(2026, 3, 2, 12, 30))
    assert hall.is_open(dt.datetime(2026, 3, 2, 13, 30))
    assert not hall.is_open(dt.datetime(2026, 3, 2, 17, 0))
    default = HallCalendar()
    assert default.is_open(dt.datetime(2026, 3, 2, 12, 30))


def test_open_hours_use_the_hall_time_zone() -> None:
    """10:00 in Shanghai is 02:00 UTC: an aware UTC time is converted, not taken as local."""
    calendar = HallCalendar()
    utc = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
    assert calendar.is_open(utc)
    assert not calendar.is_open(utc.replace(hour=10))


def test_local_closures_close_the_hall_but_do_not_move_deadlines(hall: HallCalendar) -> None:
    """A closure day is closed; statutory working-day deadlines still count it."""
    assert hall.closure(D("2026-12-24")) == "floor renovation"
    assert not hall.is_open(dt.datetime(2026, 12, 24, 10, 0))
    assert hall.add_working_days(D("2026-12-23"), 1) == D("2026-12-24")


def test_add_working_days_skips_holidays_and_counts_makeup_days() -> None:
    """5 working days from 2025-09-26 land on 2025-10-10, counting 28 Sep and 11 Oct 调休."""
    calendar = HallCalendar()
    # 26 Sep (Fri) → 28 Sep (Sun, 调休) 1, 29 2, 30 3, [1–8 Oct holiday], 9 4, 10 5.
    assert calendar.add_working_days(D("2025-09-26"), 5) == D("2025-10-10")
    assert calendar.add_working_days(D("2025-10-10"), 1) == D("2025-10-11")
    assert calendar.add_working_days(D("2026-02-13"), 1) == D("2026-02-14")
    assert calendar.add_working_days(D("2026-02-14"), 1) == D("2026-02-24")
    assert calendar.add_working_days(D("2026-02-24"), -1) == D("2026-02-14")
    assert calendar.add_working_days(D("2026-02-24"), 0) == D("2026-02-24")


def test_a_year_without_a_table_is_refused_not_guessed() -> None:
    """2027 is not in the package: asking is an error naming the date."""
    calendar = HallCalendar()
    with pytest.raises(CalendarError, match="2027-03-01"):
        calendar.day_type(D("2027-03-01"))


def test_the_override_file_supplies_next_years_table(hall: HallCalendar) -> None:
    """With 2027 in the hall file, its holidays and make-up days are known."""
    assert hall.has_table(2027)
    assert hall.day_type(D("2027-02-08")) == DayType.PUBLIC_HOLIDAY
    assert hall.day_type(D("2027-02-06")) == DayType.MAKEUP_WORKDAY
    assert hall.day_type(D("2027-02-10")) == DayType.WORKING_DAY


def test_december_without_next_years_table_warns(hall: HallCalendar) -> None:
    """On 2026-12-04 with no 2027 table a warning appears; November or a filled table: none."""
    december = ManualClock(wall=SHANGHAI_2026_12_04_10H)
    november = ManualClock(wall=SHANGHAI_2026_11_20_10H)
    codes = [warning.code for warning in HallCalendar().warnings(december)]
    assert codes == ["next_year_table_missing"]
    assert HallCalendar().warnings(november) == []
    assert hall.warnings(december) == []


def test_unsynchronised_clock_warns() -> None:
    """A hub whose clock is not synchronised says so (and does not trust its date)."""
    clock = ManualClock(wall=SHANGHAI_2026_12_04_10H, synchronised=False)
    codes = [warning.code for warning in HallCalendar().warnings(clock)]
    assert codes == ["clock_not_synchronised"]


def test_bad_override_file_names_the_line(tmp_path: Path) -> None:
    """A closing time that is not a time is refused, naming its line."""
    path = tmp_path / "calendar.yaml"
    path.write_text('weekday:\n  opens: "09:00"\n  closes: "08:00:00x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3"):
        load_calendar_settings(path)


def test_the_halls_file_sits_on_the_citys_calendar(tmp_path: Path) -> None:
    """Hall settings replace the city's; year tables merge by year; closures from both apply."""
    city_file = tmp_path / "city-calendar.yaml"
    city_file.write_text(
        "saturday: {opens: '09:00', closes: '16:00'}\n"
        "years:\n"
        "  2027: {holidays: [2027-01-01]}\n"
        "  2028: {holidays: [2028-01-03]}\n"
        "closures: [{date: 2026-12-31, reason: city-wide systems upgrade}]\n",
        encoding="utf-8",
    )
    hall_file = tmp_path / "calendar.yaml"
    hall_file.write_text(OVERRIDES, encoding="utf-8")

    settings = layered_settings(
        load_calendar_settings(city_file), load_calendar_settings(hall_file)
    )
    calendar = HallCalendar(settings)

    saturday = calendar.hours(D("2026-12-05"))
    assert saturday is not None and saturday.closes == dt.time(12)  # the hall's hours
    assert calendar.day_type(D("2027-02-08")) == DayType.PUBLIC_HOLIDAY  # hall's 2027 table
    assert calendar.day_type(D("2027-01-01")) == DayType.PUBLIC_HOLIDAY
    assert calendar.day_type(D("2028-01-03")) == DayType.PUBLIC_HOLIDAY  # the city's 2028
    assert calendar.closure(D("2026-12-31")) == "city-wide systems upgrade"
    assert calendar.closure(D("2026-12-24")) == "floor renovation"
    assert layered_settings(None, None) is None
