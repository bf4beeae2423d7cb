"""Cron-like schedules (minute hour day-of-month month day-of-week), in local time.

Supports ``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n`` or
``a-b/n``. Day of week runs 0-6 from Sunday (7 is Sunday too). As in cron, when both
day of month and day of week are restricted, a day matching either is taken.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rules.errors import ScheduleError

_LIMITS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
SEARCH_DAYS = 5 * 366  # "30 2 29 2 *" is the rarest sensible schedule


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed five-field schedule."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        parts = text.split()
        if len(parts) != len(_LIMITS):
            raise ScheduleError(text, "needs five fields: minute hour day month weekday")
        sets = [
            _field(text, part, low, high) for part, (low, high) in zip(parts, _LIMITS, strict=True)
        ]
        weekdays = frozenset(day % 7 for day in sets[4])
        return cls(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after `moment` (kept in its time zone)."""
        start = moment.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                found = self._first_time(day, start)
                if found is not None:
                    return found
            day += dt.timedelta(days=1)
        raise ScheduleError(str(self), "never matches")

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def _first_time(self, day: dt.date, start: dt.datetime) -> dt.datetime | None:
        for hour in sorted(self.hours):
            for minute in sorted(self.minutes):
                candidate = dt.datetime.combine(day, dt.time(hour, minute), start.tzinfo)
                if candidate >= start:
                    return candidate
        return None


def _field(text: str, part: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        span, _, step_text = item.partition("/")
        step = _number(text, step_text, 1, high) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first, last = _number(text, first_text, low, high), _number(text, last_text, low, high)
        else:
            first = _number(text, span, low, high)
            last = high if step_text else first
        if first > last:
            raise ScheduleError(text, f"range {span} runs backwards")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise ScheduleError(text, f"{value!r} is not a number from {low} to {high}")
    return int(value)
