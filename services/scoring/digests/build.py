"""A team digest from window sums (pure): each KPI pooled this period against the previous
one, who crossed the qualified line, and the improvement plans due."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.scoring.digests.periods import Period, following, previous
from services.scoring.kpi.grading import KpiValue, evaluate_all
from services.scoring.kpi.lines import KpiLine
from services.scoring.kpi.windows import Window
from shared.catalogue import CATALOGUE, TRAINING_SESSIONS
from shared.webhooks import (
    Crossing,
    DigestContent,
    DigestCrossing,
    DigestGoal,
    DigestKpi,
    DigestPeriod,
    DigestPlan,
)

Sums = Mapping[str, tuple[float, int]]

# At or beyond the qualified line; "unqualified" is below it; insufficient data or no grade
# (nps, training outside quarters) is neither, so it never counts as crossing.
_ABOVE = frozenset({"qualified", "excellent"})
_BELOW = "unqualified"


def crossing(previous_grade: str | None, grade: str | None) -> Crossing | None:
    """How a grade moved across the qualified line between two periods, if it did."""
    if previous_grade in _ABOVE and grade == _BELOW:
        return "fell_below"
    if previous_grade == _BELOW and grade in _ABOVE:
        return "recovered"
    return None


@dataclass(frozen=True)
class MemberSums:
    """A member's window sums for the digest's period and the previous one."""

    specialist_id: str
    name: str | None
    now: Sums = field(default_factory=dict)
    before: Sums = field(default_factory=dict)


@dataclass(frozen=True)
class UnclosedPlan:
    """An improvement plan not achieved or missed yet, with its goals (kpi, target, due)."""

    specialist_id: str
    name: str | None
    quarter: str
    status: str
    goals: tuple[tuple[str, float, dt.date], ...]


def window_of(period: Period) -> Window:
    # A period is graded like an Nd window of its length (training is graded on quarters only).
    return Window(period.name, period.start, period.end, "days")


def _period_out(period: Period) -> DigestPeriod:
    return DigestPeriod(name=period.name, kind=period.kind, start=period.start, end=period.end)


def _pool(sums: Iterable[Sums]) -> dict[str, tuple[float, int]]:
    total: dict[str, tuple[float, int]] = {}
    for one in sums:
        for metric, (num, den) in one.items():
            old_num, old_den = total.get(metric, (0.0, 0))
            total[metric] = (old_num + num, old_den + den)
    return total


def _samples(key: str, value: KpiValue) -> int | None:
    if key == TRAINING_SESSIONS:
        return None if value.numerator is None else int(value.numerator)
    return value.denominator


def _higher_is_better(key: str, line: KpiLine | None) -> bool:
    if line is not None:
        return line.higher_is_better
    known = CATALOGUE.get(key)
    return True if known is None else known.higher_is_better


def kpi_rows(
    now: Mapping[str, KpiValue], before: Mapping[str, KpiValue], lines: Mapping[str, KpiLine]
) -> list[DigestKpi]:
    """One row per KPI of the catalogue, in its order (whatever keys it has)."""
    rows: list[DigestKpi] = []
    for key, cur in now.items():
        old = before[key]
        change = None if cur.value is None or old.value is None else float(cur.value - old.value)
        rows.append(
            DigestKpi(
                kpi=key,
                value=cur.value,
                samples=_samples(key, cur),
                grade=cur.grade,
                previous_value=old.value,
                previous_samples=_samples(key, old),
                previous_grade=old.grade,
                change=change,
                qualified=cur.qualified,
                higher_is_better=_higher_is_better(key, lines.get(key)),
            )
        )
    return rows


def crossings(
    members: Sequence[MemberSums], period: Period, lines: Mapping[str, KpiLine]
) -> list[DigestCrossing]:
    """Members whose grade on a KPI crossed the qualified line, by member then KPI order."""
    win, prev_win = window_of(period), window_of(previous(period))
    out: list[DigestCrossing] = []
    for m in sorted(members, key=lambda m: m.specialist_id):
        now = evaluate_all(m.now, win, lines)
        before = evaluate_all(m.before, prev_win, lines)
        for key, cur in now.items():
            old = before[key]
            direction = crossing(old.grade, cur.grade)
            if direction is not None:
                out.append(
                    DigestCrossing(
                        specialist_id=m.specialist_id,
                        name=m.name,
                        kpi=key,
                        direction=direction,
                        value=cur.value,
                        previous_value=old.value,
                        qualified=cur.qualified,
                    )
                )
    return out


def plans_due(plans: Iterable[UnclosedPlan], period: Period) -> list[DigestPlan]:
    """Unclosed plans with goals due by the end of the next period; goals due on or before
    the period's last day are overdue."""
    horizon = following(period).end
    out: list[DigestPlan] = []
    for plan in sorted(plans, key=lambda p: (p.specialist_id, p.quarter)):
        goals = [
            DigestGoal(kpi=kpi, target=target, due=due, overdue=due <= period.end)
            for kpi, target, due in sorted(plan.goals, key=lambda g: (g[2], g[0]))
            if due <= horizon
        ]
        if goals:
            out.append(
                DigestPlan(
                    specialist_id=plan.specialist_id,
                    name=plan.name,
                    quarter=plan.quarter,
                    status=plan.status,
                    goals=goals,
                )
            )
    return out


def build_digest(
    *,
    team_id: str,
    team_name: str | None,
    timezone: str,
    period: Period,
    members: Sequence[MemberSums],
    plans: Iterable[UnclosedPlan],
    lines: Mapping[str, KpiLine],
) -> DigestContent:
    """The digest of ``period`` for a team: pooled KPIs of its members against the previous
    period, the members who crossed a line, and plans due."""
    before = previous(period)
    now = evaluate_all(_pool(m.now for m in members), window_of(period), lines)
    old = evaluate_all(_pool(m.before for m in members), window_of(before), lines)
    return DigestContent(
        team_id=team_id,
        team_name=team_name,
        timezone=timezone,
        period=_period_out(period),
        previous=_period_out(before),
        members=len(members),
        kpis=kpi_rows(now, old, lines),
        crossed=crossings(members, period, lines),
        plans_due=plans_due(plans, period),
    )
