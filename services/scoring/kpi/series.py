"""Daily series: one KPI value per local date, with the sums of the 7 days ending on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from services.scoring.kpi.grading import KpiValue, evaluate
from services.scoring.kpi.lines import KpiLine
from services.scoring.kpi.windows import Window

ROLLING_DAYS: Final = 7
# (numerator, denominator) per local date; a date without a bucket counts as 0/0.
DayBuckets = Mapping[dt.date, tuple[float, int]]


@dataclass(frozen=True)
class SeriesPoint:
    """One date of a series: the day's own value and the value of the 7 days ending on it."""

    day: dt.date
    value: KpiValue
    rolling: KpiValue


def lookback_start(start: dt.date) -> dt.date:
    """The first date whose bucket a series starting at ``start`` reads (its first rolling
    window reaches 6 days back; the calendar's first date caps it)."""
    try:
        return start - dt.timedelta(days=ROLLING_DAYS - 1)
    except OverflowError:
        return dt.date.min


def daily_points(
    key: str, buckets: DayBuckets, start: dt.date, days: int, line: KpiLine
) -> list[SeriesPoint]:
    """``days`` points from ``start``. The rolling value is graded like any 7-day window: on
    the summed numerators and denominators (a pooled ratio, never a mean of daily ratios)."""
    points: list[SeriesPoint] = []
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        num, den = buckets.get(day, (0.0, 0))
        first = lookback_start(day)
        window_num, window_den = 0.0, 0
        for back in range((day - first).days + 1):
            n, d = buckets.get(first + dt.timedelta(days=back), (0.0, 0))
            window_num += n
            window_den += d
        points.append(
            SeriesPoint(
                day,
                evaluate(key, num, den, line, Window(day.isoformat(), day, day, "days")),
                evaluate(
                    key,
                    window_num,
                    window_den,
                    line,
                    Window(f"{ROLLING_DAYS}d", first, day, "days"),
                ),
            )
        )
    return points
