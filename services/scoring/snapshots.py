"""Window KPI snapshots from kpi_daily, shared by the outbox relay and the REST API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.kpi.grading import KpiValue, evaluate_all
from services.scoring.kpi.lines import DEFAULT_LINES, KpiLine
from services.scoring.kpi.windows import Window

_SUMS = text(
    """
    SELECT specialist_id, metric, sum(num) AS num, sum(den) AS den FROM kpi_daily
    WHERE specialist_id = ANY(:ids) AND day BETWEEN :start AND :end
    GROUP BY specialist_id, metric
    """
)


async def window_sums(
    session: AsyncSession, specialist_ids: Iterable[str], window: Window
) -> dict[str, dict[str, tuple[float, int]]]:
    """(numerator, denominator) per specialist and KPI key over the window's local dates."""
    ids = sorted(set(specialist_ids))
    out: dict[str, dict[str, tuple[float, int]]] = {i: {} for i in ids}
    if not ids:
        return out
    rows = await session.execute(_SUMS, {"ids": ids, "start": window.start, "end": window.end})
    for who, metric, num, den in rows:
        out[who][metric] = (float(num), int(den))
    return out


async def window_kpis(
    session: AsyncSession,
    specialist_ids: Iterable[str],
    window: Window,
    lines: Mapping[str, KpiLine] = DEFAULT_LINES,
) -> dict[str, dict[str, KpiValue]]:
    """Every KPI of every given specialist over ``window`` (missing buckets count as 0/0)."""
    sums = await window_sums(session, specialist_ids, window)
    return {who: evaluate_all(per, window, lines) for who, per in sums.items()}
