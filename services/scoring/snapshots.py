"""Window KPI snapshots for the score relay: the engine's session, the read side's sums."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import queries
from services.scoring.kpi.grading import KpiValue, evaluate_all
from services.scoring.kpi.lines import DEFAULT_LINES, KpiLine
from services.scoring.kpi.windows import Window
from shared.db import raw_connection


async def window_sums(
    session: AsyncSession, specialist_ids: Iterable[str], window: Window
) -> dict[str, queries.Sums]:
    """(numerator, denominator) per specialist and KPI key over the window's local dates."""
    conn = await raw_connection(session)
    return await queries.window_sums(conn, specialist_ids, window.start, window.end)


async def window_kpis(
    session: AsyncSession,
    specialist_ids: Iterable[str],
    window: Window,
    lines: Mapping[str, KpiLine] = DEFAULT_LINES,
) -> dict[str, dict[str, KpiValue]]:
    """Every KPI of every given specialist over ``window`` (missing buckets count as 0/0)."""
    sums = await window_sums(session, specialist_ids, window)
    return {who: evaluate_all(per, window, lines) for who, per in sums.items()}
