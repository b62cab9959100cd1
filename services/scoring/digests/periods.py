"""Digest periods and schedule (pure): ISO weeks and calendar months of local dates, when each
period's digest is due, and which finished period is due at a moment."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from shared.settings import Settings

PeriodKind: TypeAlias = Literal["week", "month"]
WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_WEEK_RE: Final = re.compile(r"([0-9]{4})-W([0-9]{2})")
_MONTH_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})")
_DAY: Final = dt.timedelta(days=1)


class PeriodError(ValueError):
    """A period name that is neither YYYY-Www nor YYYY-MM, or a date out of range."""


@dataclass(frozen=True)
class Period:
    """A closed range of local dates: an ISO week (Monday..Sunday) or a calendar month."""

    kind: PeriodKind
    start: dt.date
    end: dt.date

    @property
    def name(self) -> str:
        if self.kind == "week":
            year, week, _ = self.start.isocalendar()
            return f"{year:04d}-W{week:02d}"
        return f"{self.start.year:04d}-{self.start.month:02d}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def period_of(kind: PeriodKind, day: dt.date) -> Period:
    """The week (or month) that contains ``day``."""
    if kind == "week":
        start = day - dt.timedelta(days=day.weekday())
        return Period("week", start, start + dt.timedelta(days=6))
    start = day.replace(day=1)
    following = (start + dt.timedelta(days=31)).replace(day=1)
    return Period("month", start, following - _DAY)


def previous(period: Period) -> Period:
    try:
        return period_of(period.kind, period.start - _DAY)
    except OverflowError:
        raise PeriodError(f"no period before {period.name}") from None


def following(period: Period) -> Period:
    try:
        return period_of(period.kind, period.end + _DAY)
    except OverflowError:
        raise PeriodError(f"no period after {period.name}") from None


def parse_period(text: str) -> Period:
    """``2026-W49`` (ISO week) or ``2026-12`` (month); years 2..9998 (a previous and a next
    period exist)."""
    s = text.strip() if isinstance(text, str) else ""
    error = f"period must be YYYY-Www (an ISO week, e.g. 2026-W49) or YYYY-MM, got {text!r}"
    week = _WEEK_RE.fullmatch(s)
    month = _MONTH_RE.fullmatch(s)
    try:
        if week is not None:
            year = int(week.group(1))
            if not 2 <= year <= 9998:
                raise PeriodError(error)
            return period_of("week", dt.date.fromisocalendar(year, int(week.group(2)), 1))
        if month is not None:
            year = int(month.group(1))
            if not 2 <= year <= 9998:
                raise PeriodError(error)
            return period_of("month", dt.date(year, int(month.group(2)), 1))
    except ValueError:  # week 54, week 53 of a 52-week year, month 13
        raise PeriodError(error) from None
    raise PeriodError(error)


@dataclass(frozen=True)
class DigestSchedule:
    """KPI_DIGEST_* settings: which periods get a digest and when (local time) it goes out.

    A week's digest is due at ``hour`` on the first ``weekday`` after the week (Monday: the
    next day); a month's at ``hour`` on the next month's first day. ``kind`` None: off.
    """

    kind: PeriodKind | None = "week"
    weekday: int = 0  # Monday
    hour: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6 or not 0 <= self.hour <= 23:
            raise ValueError("weekday 0..6 and hour 0..23")

    @property
    def enabled(self) -> bool:
        return self.kind is not None

    @property
    def period_kind(self) -> PeriodKind:
        """The kind of period routes default to (weeks when digests are off)."""
        return self.kind or "week"

    @classmethod
    def from_settings(cls, settings: Settings) -> DigestSchedule:
        kinds: dict[str, PeriodKind | None] = {"weekly": "week", "monthly": "month", "off": None}
        return cls(
            kind=kinds[settings.digest_schedule],
            weekday=WEEKDAYS.index(settings.digest_weekday),
            hour=settings.digest_hour,
        )


def due_at(period: Period, schedule: DigestSchedule, tz: dt.tzinfo) -> dt.datetime:
    """When the digest of ``period`` is due: ``hour`` o'clock local on the due day.

    An hour the clocks skip (spring forward) reads as the offset before the change, i.e. an
    hour later on the wall clock; an hour that repeats (fall back) as its first occurrence.
    """
    day = period.end + _DAY
    if period.kind == "week":
        day += dt.timedelta(days=(schedule.weekday - day.weekday()) % 7)
    return dt.datetime.combine(day, dt.time(schedule.hour), tzinfo=tz)


def local_day(moment: dt.datetime, tz: dt.tzinfo) -> dt.date:
    if moment.utcoffset() is None:
        raise ValueError("an aware datetime is needed")
    return moment.astimezone(tz).date()


def last_finished(kind: PeriodKind, today: dt.date) -> Period:
    """The latest period that ended before ``today``."""
    return previous(period_of(kind, today))


def due_period(now: dt.datetime, schedule: DigestSchedule, tz: dt.tzinfo) -> Period | None:
    """The latest finished period whose digest is due at ``now`` (None when digests are off).

    Only this one is recorded: a period missed while the service was down goes out late,
    once; earlier ones (e.g. before digests existed) are never back-filled.
    """
    if schedule.kind is None:
        return None
    last = last_finished(schedule.kind, local_day(now, tz))
    # Each period is due within the next one (a week later at most, or the month's 1st).
    return last if due_at(last, schedule, tz) <= now else previous(last)
