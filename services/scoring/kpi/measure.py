"""How time is measured: the organisation's zone and, optionally, its business hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from services.scoring.kpi.contributions import DEFAULT_SLA_HOURS, HoursFn

# What appraisals name when no business calendar is configured.
CALENDAR_HOURS = "calendar-hours"


@dataclass(frozen=True)
class Measure:
    """How time is measured: the organisation's zone (day buckets), under a business
    calendar the working hours between two instants (response and resolution times), and
    the first-response SLA in those hours."""

    tz: tzinfo
    hours_fn: HoursFn | None = None
    calendar: str = CALENDAR_HOURS  # what appraisals name: calendar hours or the calendar
    sla_hours: float = DEFAULT_SLA_HOURS  # KPI_SLA_FIRST_RESPONSE_HOURS

    def today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()
