"""How time is measured: the organisation's zone and, optionally, its business hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from services.scoring.kpi.contributions import HoursFn

# What appraisals name when no business calendar is configured.
CALENDAR_HOURS = "calendar-hours"


@dataclass(frozen=True)
class Measure:
    """How time is measured: the organisation's zone (day buckets) and, under a business
    calendar, the working hours between two instants (response time)."""

    tz: tzinfo
    hours_fn: HoursFn | None = None
    calendar: str = CALENDAR_HOURS  # what appraisals name: calendar hours or the calendar

    def today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()
