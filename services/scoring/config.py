"""The scoring service's configuration, parsed once from the settings, naming bad variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from zoneinfo import ZoneInfo

from services.scoring.appraisal.domain import (
    AppraisalRule,
    IncentivePolicy,
    parse_incentives,
    parse_rule,
)
from services.scoring.calendar import CalendarError, load_calendar
from services.scoring.kpi.contributions import HoursFn
from services.scoring.kpi.lines import KpiLine, lines_with_overrides
from services.scoring.kpi.measure import CALENDAR_HOURS, Measure
from services.scoring.kpi.windows import Window, parse_window
from shared.settings import Settings, SettingsError

# A quarter-to-date window reaches back at most this many days (92 + today).
QTD_DAYS = 93


@dataclass(frozen=True)
class ScoringConfig:
    """Everything scoring's domain needs from the environment, validated together."""

    measure: Measure
    timezone: str
    lines: Mapping[str, KpiLine]
    alert_window: str
    appraisal_rule: AppraisalRule
    incentives: IncentivePolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringConfig:
        """Parse once; SettingsError names the variable and the reason."""
        tz = ZoneInfo(settings.timezone)
        hours_fn: HoursFn | None = None
        calendar = CALENDAR_HOURS
        problems: list[str] = []
        if settings.business_calendar:
            try:
                loaded = load_calendar(settings.business_calendar)
            except CalendarError as exc:
                problems.append(f"KPI_BUSINESS_CALENDAR: {exc}")
            else:
                hours_fn, calendar = loaded.hours_fn(tz), loaded.name
        lines: Mapping[str, KpiLine] = {}
        try:
            lines = MappingProxyType(lines_with_overrides(settings.kpi_lines))
        except ValueError as exc:
            problems.append(f"KPI_KPI_LINES: {exc}")
        rule = incentives = None
        try:
            rule = parse_rule(settings.appraisal_rule)
        except ValueError as exc:
            problems.append(f"KPI_APPRAISAL_RULE: {exc}")
        try:
            incentives = parse_incentives(settings.incentives)
        except ValueError as exc:
            problems.append(f"KPI_INCENTIVES: {exc}")
        if problems or rule is None or incentives is None:
            raise SettingsError("Invalid configuration:\n  " + "\n  ".join(problems))
        return cls(
            measure=Measure(tz, hours_fn, calendar, settings.sla_first_response_hours),
            timezone=settings.timezone,
            lines=lines,
            alert_window=settings.alert_window,
            appraisal_rule=rule,
            incentives=incentives,
        )

    def alert_window_at(self, as_of: date) -> Window:
        return parse_window(self.alert_window, as_of)

    @property
    def alert_window_days(self) -> int:
        """How far back a clock sweep must look so windows moving by a day are republished."""
        if self.alert_window == "qtd":
            return QTD_DAYS
        return int(self.alert_window[:-1]) + 1
