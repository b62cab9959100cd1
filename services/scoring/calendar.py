"""Business calendar: working hours, rest days, public holidays and make-up workdays (调休)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from services.scoring.kpi.measure import CALENDAR_HOURS

WEEKDAYS: Final[dict[str, int]] = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}  # fmt: skip
_SPAN_RE: Final = re.compile(r"^\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*$")
# Spans longer than this count their inner days arithmetically (nominal hours per day) so a
# response stamped years later (a data error) costs O(holidays), not a walk over every day.
LOOP_DAYS: Final = 62

HoursFn = Callable[[dt.datetime, dt.datetime], float]


class CalendarError(ValueError):
    """A calendar file that cannot be used; the message names the field and the reason."""


@dataclass(frozen=True)
class BusinessCalendar:
    """Which local hours count as working time; ``periods`` are (start, end) minutes of a day."""

    name: str
    periods: tuple[tuple[int, int], ...]
    rest_weekdays: frozenset[int]
    holidays: frozenset[dt.date]
    workdays: frozenset[dt.date]
    timezone: ZoneInfo | None = None

    def is_workday(self, day: dt.date) -> bool:
        """Make-up workdays (调休) beat holidays and rest days; holidays beat ordinary weekdays."""
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() not in self.rest_weekdays

    @property
    def hours_per_day(self) -> float:
        return sum(end - start for start, end in self.periods) / 60.0

    def business_hours_between(
        self, start: dt.datetime, end: dt.datetime, tz: dt.tzinfo | None = None
    ) -> float:
        """Working hours in [start, end) in the calendar's zone (else ``tz``); < 0 if reversed."""
        for name, ts in (("start", start), ("end", end)):
            if ts.tzinfo is None or ts.utcoffset() is None:
                raise ValueError(f"{name} must carry a UTC offset, got naive {ts.isoformat()}")
        if end < start:
            return -self.business_hours_between(end, start, tz)
        zone = self.timezone or tz
        if zone is None:
            raise ValueError("business_hours_between needs a time zone (calendar or tz argument)")
        # Subtracting datetimes that share a tzinfo compares wall clocks, which is wrong
        # across DST changes: every instant is compared in UTC.
        start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
        first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
        seconds = 0.0
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        if len(days) > LOOP_DAYS:
            inner = self.workdays_between(first + dt.timedelta(days=1), last - dt.timedelta(days=1))
            seconds += inner * self.hours_per_day * 3600.0
            days = [first, last]
        for day in days:
            if self.is_workday(day):
                for begin, finish in self.periods:
                    # Wall-clock bounds made aware in the zone: correct across DST changes too.
                    lo = _at(day, begin, zone).astimezone(dt.UTC)
                    hi = _at(day, finish, zone).astimezone(dt.UTC)
                    overlap = (min(hi, end) - max(lo, start)).total_seconds()
                    if overlap > 0:
                        seconds += overlap
        return seconds / 3600.0

    def workdays_between(self, lo: dt.date, hi: dt.date) -> int:
        """Number of working days in [lo, hi], without visiting each day."""
        n = (hi - lo).days + 1
        if n <= 0:
            return 0
        count = 0
        for weekday in range(7):
            if weekday not in self.rest_weekdays:
                count += n // 7 + (1 if (weekday - lo.weekday()) % 7 < n % 7 else 0)
        # Listed dates only adjust the weekly rule where they disagree with it.
        count -= sum(
            1 for h in self.holidays if lo <= h <= hi and h.weekday() not in self.rest_weekdays
        )
        count += sum(
            1 for w in self.workdays if lo <= w <= hi and w.weekday() in self.rest_weekdays
        )
        return count

    def hours_fn(self, tz: dt.tzinfo) -> HoursFn:
        """``(start, end) -> business hours`` bound to the organisation's zone."""

        def hours(start: dt.datetime, end: dt.datetime) -> float:
            return self.business_hours_between(start, end, tz)

        return hours


def _at(day: dt.date, minute: int, zone: dt.tzinfo) -> dt.datetime:
    if minute >= 24 * 60:
        nxt = day + dt.timedelta(days=1)
        return dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)


def _span(text: object, where: str) -> tuple[int, int]:
    match = _SPAN_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise CalendarError(f"{where} must be 'HH:MM-HH:MM' (e.g. '09:00-18:00'), got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
        raise CalendarError(f"{where} has an invalid time of day: {text!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise CalendarError(f"{where} must end after it starts, got {text!r}")
    return start, end


def _date(raw: object, where: str) -> dt.date:
    if isinstance(raw, dt.datetime):
        raise CalendarError(f"{where} must be a date (YYYY-MM-DD), got a timestamp {raw!r}")
    if isinstance(raw, dt.date):
        return raw  # YAML parses unquoted dates itself
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise CalendarError(f"{where} must be a date (YYYY-MM-DD), got {raw!r}")


def _dates(raw: object, field: str) -> frozenset[dt.date]:
    """A list of dates or ``{from, to[, name]}`` ranges (inclusive)."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise CalendarError(f"{field} must be a list of dates or {{from, to}} ranges")
    out: set[dt.date] = set()
    for i, item in enumerate(raw):
        where = f"{field}[{i}]"
        if isinstance(item, Mapping):
            unknown = set(item) - {"from", "to", "name", "date"}
            if unknown:
                raise CalendarError(f"{where} has unknown keys {sorted(unknown)}")
            if "date" in item:
                out.add(_date(item["date"], f"{where}.date"))
                continue
            lo = _date(item.get("from"), f"{where}.from")
            hi = _date(item.get("to", item.get("from")), f"{where}.to")
            if hi < lo:
                raise CalendarError(f"{where}.to ({hi}) is before from ({lo})")
            if (hi - lo).days > 366:
                raise CalendarError(f"{where} spans more than a year")
            out.update(lo + dt.timedelta(days=n) for n in range((hi - lo).days + 1))
        else:
            out.add(_date(item, where))
    return frozenset(out)


def parse_calendar(data: object, default_name: str = "business-calendar") -> BusinessCalendar:
    """Build a calendar from the decoded file; CalendarError names the offending field."""
    if not isinstance(data, Mapping):
        raise CalendarError("the calendar file must hold an object (mapping) at the top level")
    known = {"name", "timezone", "working_hours", "lunch_break", "rest_weekdays", "holidays",
             "workdays"}  # fmt: skip
    unknown = set(data) - known
    if unknown:
        raise CalendarError(f"unknown calendar keys {sorted(unknown)} (known: {sorted(known)})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise CalendarError(f"name must be a non-empty string of at most 64 chars, got {name!r}")
    if name.strip() == CALENDAR_HOURS:
        raise CalendarError(f"name {CALENDAR_HOURS!r} is reserved for 'no business calendar'")
    zone: ZoneInfo | None = None
    if data.get("timezone") is not None:
        try:
            zone = ZoneInfo(str(data["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"timezone {data['timezone']!r} is not an IANA zone") from None
    raw_hours = data.get("working_hours", "09:00-18:00")
    spans = raw_hours if isinstance(raw_hours, list) else [raw_hours]
    periods = sorted(_span(s, f"working_hours[{i}]") for i, s in enumerate(spans))
    if not periods:
        raise CalendarError("working_hours must list at least one HH:MM-HH:MM span")
    if data.get("lunch_break") is not None:
        periods = _cut(periods, _span(data["lunch_break"], "lunch_break"))
    for (_, end), (start, _) in itertools.pairwise(periods):
        if start < end:
            raise CalendarError("working_hours spans overlap")
    rest_raw = data.get("rest_weekdays", ["saturday", "sunday"])
    if not isinstance(rest_raw, list):
        raise CalendarError(
            "rest_weekdays must be a list of weekday names (e.g. [saturday, sunday])"
        )
    rest: set[int] = set()
    for i, item in enumerate(rest_raw):
        key = str(item).strip().lower()
        if key not in WEEKDAYS:
            raise CalendarError(f"rest_weekdays[{i}] is not a weekday name: {item!r}")
        rest.add(WEEKDAYS[key])
    if len(rest) == 7:
        raise CalendarError("rest_weekdays must leave at least one working weekday")
    holidays = _dates(data.get("holidays"), "holidays")
    workdays = _dates(data.get("workdays"), "workdays")
    both = sorted(holidays & workdays)
    if both:
        raise CalendarError(f"workdays and holidays both list {both[0].isoformat()}")
    return BusinessCalendar(name.strip(), tuple(periods), frozenset(rest), holidays, workdays, zone)


def _cut(periods: Iterable[tuple[int, int]], gap: tuple[int, int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in periods:
        if gap[0] > start:
            out.append((start, min(end, gap[0])))
        if gap[1] < end:
            out.append((max(start, gap[1]), end))
    return [p for p in out if p[1] > p[0]]


def load_calendar(path: str | Path) -> BusinessCalendar:
    """Read a YAML or JSON calendar file (``KPI_BUSINESS_CALENDAR``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarError(f"cannot read calendar file {str(file)!r}: {exc.strerror}") from None
    try:
        data: Any = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CalendarError(f"calendar file {str(file)!r} is not valid YAML/JSON: {exc}") from None
    return parse_calendar(data, default_name=file.stem)
