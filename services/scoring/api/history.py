"""What the history routes share: the from/to rule (defaults, limits) and the point bodies."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final

from fastapi import Query

from services.scoring.api.errors import bad_param
from services.scoring.kpi.grading import KpiValue
from services.scoring.kpi.series import SeriesPoint

MAX_HISTORY_DAYS: Final = 400
DEFAULT_HISTORY_DAYS: Final = 30

FromParam = Annotated[
    dt.date | None,
    Query(
        alias="from",
        description=f"First local date; default to - {DEFAULT_HISTORY_DAYS - 1} days.",
    ),
]
ToParam = Annotated[
    dt.date | None, Query(description="Last local date; default today in KPI_TIMEZONE.")
]


def history_range(from_: dt.date | None, to: dt.date | None, today: dt.date) -> tuple[dt.date, int]:
    """The first date and the number of dates asked for; 422 naming ``from`` or ``to``."""
    end = to or today
    try:
        start = from_ or end - dt.timedelta(days=DEFAULT_HISTORY_DAYS - 1)
    except OverflowError:
        raise bad_param("query", "to", f"to ({end}) leaves no room for a default from") from None
    if start > end:
        raise bad_param("query", "from", f"from ({start}) must not be after to ({end})")
    span = (end - start).days + 1
    if span > MAX_HISTORY_DAYS:
        raise bad_param("query", "from", f"at most {MAX_HISTORY_DAYS} days per request, got {span}")
    return start, span


def _sums(value: KpiValue) -> dict[str, Any]:
    return {"value": value.value, "numerator": value.numerator, "denominator": value.denominator}


def points_out(points: list[SeriesPoint]) -> list[dict[str, Any]]:
    return [{"date": p.day, **_sums(p.value), "rolling_7d": _sums(p.rolling)} for p in points]
