"""The hall calendar: which days the hall works, when it is open, working-day deadlines.

China moves working days around its public holidays: a holiday week is paid for by
make-up workdays (调休) on the weekends around it, published each November by the
State Council for the following year. Day types come from the ``chinese-calendar``
package, which carries the published tables; a hall override file adds next year's
table before a package update brings it, and the hall's own closures.

Opening hours depend on the day type. Saturday service (where a hall offers it)
runs only on ordinary Saturdays: a Saturday that is a public holiday is closed, and
a Saturday that is a make-up workday keeps full weekday hours.

A year with no table is an error, never a guess: a deadline counted on a wrong
calendar is worse than one refused. `warnings()` says in December when next year's
table is still missing, and when the hub's clock cannot be trusted.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.clock import Clock
from hub.errors import ConfigError, HallhubError
from hub.yamlfile import load_model

logger = logging.getLogger(__name__)

SATURDAY = 5
SUNDAY = 6
WARN_FROM_MONTH = 12  # the State Council publishes in Nov; warn if December has no table


class CalendarError(HallhubError):
    """The calendar cannot answer for a date (no published table for its year)."""

    def __init__(self, day: dt.date, reason: str) -> None:
        self.day = day
        super().__init__(f"{day.isoformat()}: {reason}")


class DayType(enum.StrEnum):
    """What kind of day a date is for the hall."""

    WORKING_DAY = "working_day"
    MAKEUP_WORKDAY = "makeup_workday"  # 调休: a weekend day worked to pay for a holiday
    PUBLIC_HOLIDAY = "public_holiday"
    WEEKEND = "weekend"


WORKING_TYPES = frozenset({DayType.WORKING_DAY, DayType.MAKEUP_WORKDAY})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Period(_Strict):
    """A stretch of the day, local time, start included, end excluded."""

    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self

    def contains(self, moment: dt.time) -> bool:
        return self.start <= moment < self.end


class DayHours(_Strict):
    """Opening hours of one day type, and whether the midday window is served."""

    opens: dt.time
    closes: dt.time
    midday: Period | None = Field(
        default=None, description="the lunch window; closed unless midday_service is true"
    )
    midday_service: bool = True

    def periods(self) -> list[Period]:
        whole = Period(start=self.opens, end=self.closes)
        if self.midday is None or self.midday_service:
            return [whole]
        return [
            Period(start=self.opens, end=self.midday.start),
            Period(start=self.midday.end, end=self.closes),
        ]


class YearTable(_Strict):
    """One year's published holiday table, for a year the package does not know yet."""

    holidays: list[dt.date]
    makeup_workdays: list[dt.date] = []


class Closure(_Strict):
    """A day the hall is closed for its own reasons (renovation, power works)."""

    date: dt.date
    reason: str


DEFAULT_WEEKDAY = DayHours(
    opens=dt.time(9),
    closes=dt.time(17),
    midday=Period(start=dt.time(12), end=dt.time(13, 30)),
)


class OpeningSchedule(_Strict):
    """Opening hours alone: what a city sets for its halls in a schedule file."""

    timezone: str = "Asia/Shanghai"
    weekday: DayHours = DEFAULT_WEEKDAY
    saturday: DayHours | None = Field(
        default=None, description="Saturday service hours; none means closed on Saturdays"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name


class CalendarSettings(OpeningSchedule):
    """The hall's calendar configuration (the override file): hours, years, closures."""

    years: dict[int, YearTable] = {}
    closures: list[Closure] = []


@dataclass(frozen=True, slots=True)
class CalendarWarning:
    """Something hall IT must fix before the calendar goes wrong."""

    code: str
    message: str


def load_calendar_settings(path: Path) -> CalendarSettings:
    """Read and validate a hall calendar override file."""
    return load_model(path, CalendarSettings)


def load_opening_schedule(path: Path) -> OpeningSchedule:
    """Read and validate a file of opening hours only."""
    return load_model(path, OpeningSchedule)


def with_opening_schedule(
    calendar: CalendarSettings | None, schedule: OpeningSchedule | None, source: str
) -> CalendarSettings | None:
    """`calendar` with the hours `schedule` states; each setting stated in one place only.

    Raises ConfigError, naming `source`, when both state the same setting: which one
    should win would be a guess.
    """
    if schedule is None:
        return calendar
    hours = {name: getattr(schedule, name) for name in schedule.model_fields_set}
    if calendar is None:
        return CalendarSettings.model_validate(hours)
    twice = sorted(set(hours) & calendar.model_fields_set)
    if twice:
        raise ConfigError(
            source, [f"{name} is stated in both the calendar and the schedule" for name in twice]
        )
    return calendar.model_copy(update=hours)


def layered_settings(
    city: CalendarSettings | None, hall: CalendarSettings | None
) -> CalendarSettings | None:
    """The city's calendar baseline with the hall's own file on top.

    A setting the hall's file states replaces the city's; year tables are merged by
    year (the hall's wins for the same year), and closures from both apply.
    """
    if city is None or hall is None:
        return hall or city
    stated = {name: getattr(hall, name) for name in hall.model_fields_set}
    stated["years"] = {**city.years, **hall.years}
    stated["closures"] = [*city.closures, *hall.closures]
    return city.model_copy(update=stated)


class HallCalendar:
    """Answers day type, opening hours and working-day arithmetic for one hall."""

    def __init__(self, settings: CalendarSettings | None = None) -> None:
        self.replace_settings(settings)

    def replace_settings(self, settings: CalendarSettings | None) -> None:
        """Switch to new settings in place, so every part holding this calendar sees them."""
        self.settings_given = settings is not None
        self.settings = settings or CalendarSettings()
        self.zone = ZoneInfo(self.settings.timezone)
        self._closures = {closure.date: closure.reason for closure in self.settings.closures}

    # -- day types -------------------------------------------------------------------

    def has_table(self, year: int) -> bool:
        """Whether this year's holiday table is known (package or override file)."""
        if year in self.settings.years:
            return True
        try:
            chinese_calendar.is_workday(dt.date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def day_type(self, day: dt.date) -> DayType:
        """The day type of `day`; raises CalendarError for a year without a table."""
        table = self.settings.years.get(day.year)
        if table is not None:
            return _type_from_table(day, table)
        try:
            working = chinese_calendar.is_workday(day)
            holiday, name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError as exc:
            raise CalendarError(day, "no published holiday table for this year") from exc
        weekend = day.weekday() >= SATURDAY
        if working:
            return DayType.MAKEUP_WORKDAY if weekend else DayType.WORKING_DAY
        return DayType.PUBLIC_HOLIDAY if holiday and name else DayType.WEEKEND

    def is_working_day(self, day: dt.date) -> bool:
        return self.day_type(day) in WORKING_TYPES

    def closure(self, day: dt.date) -> str | None:
        """Why the hall is closed on `day` for its own reasons, if it is."""
        return self._closures.get(day)

    # -- opening hours ---------------------------------------------------------------

    def hours(self, day: dt.date) -> DayHours | None:
        """Opening hours on `day`, or None when the hall is closed all day."""
        if day in self._closures:
            return None
        kind = self.day_type(day)
        if kind in WORKING_TYPES:
            return self.settings.weekday  # a make-up Saturday keeps weekday hours
        if kind == DayType.WEEKEND and day.weekday() == SATURDAY:
            return self.settings.saturday
        return None

    def is_open(self, moment: dt.datetime) -> bool:
        """Whether the hall serves the public at `moment` (aware, or hall-local if naive)."""
        local = self.local(moment)
        hours = self.hours(local.date())
        if hours is None:
            return False
        return any(period.contains(local.time()) for period in hours.periods())

    def local(self, moment: dt.datetime) -> dt.datetime:
        """`moment` in the hall's time zone."""
        if moment.tzinfo is None:
            return moment.replace(tzinfo=self.zone)
        return moment.astimezone(self.zone)

    def at_wall(self, wall: float) -> dt.datetime:
        """A Unix time as hall-local time."""
        return dt.datetime.fromtimestamp(wall, self.zone)

    # -- deadlines -------------------------------------------------------------------

    def add_working_days(self, day: dt.date, count: int) -> dt.date:
        """The date `count` working days after `day` (before it, if negative).

        Statutory deadlines count official working days, so the hall's own closures
        do not move them; `day` itself is never counted.
        """
        step = 1 if count >= 0 else -1
        remaining = abs(count)
        current = day
        while remaining:
            current += dt.timedelta(days=step)
            if self.is_working_day(current):
                remaining -= 1
        return current

    # -- warnings --------------------------------------------------------------------

    def warnings(self, clock: Clock) -> list[CalendarWarning]:
        """What is wrong with the calendar or the clock it is read against, now."""
        found: list[CalendarWarning] = []
        if not clock.is_synchronised():
            found.append(
                CalendarWarning(
                    "clock_not_synchronised",
                    "the hub clock is not synchronised; schedules and deadlines wait for it",
                )
            )
            return found  # a wrong date would make the table check meaningless
        today = self.at_wall(clock.wall()).date()
        if today.month >= WARN_FROM_MONTH and not self.has_table(today.year + 1):
            found.append(
                CalendarWarning(
                    "next_year_table_missing",
                    f"no holiday table for {today.year + 1}: add the published table to the"
                    " hall calendar file or update chinese-calendar",
                )
            )
        return found


def _type_from_table(day: dt.date, table: YearTable) -> DayType:
    if day in table.makeup_workdays:
        return DayType.MAKEUP_WORKDAY
    if day in table.holidays:
        return DayType.PUBLIC_HOLIDAY
    return DayType.WEEKEND if day.weekday() >= SATURDAY else DayType.WORKING_DAY
