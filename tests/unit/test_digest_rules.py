"""The team digest's rules (pure): the crossed-line decision table, pooled KPIs against the
previous period for every catalogue key, plans due."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.digests.build import (
    MemberSums,
    UnclosedPlan,
    build_digest,
    crossing,
    plans_due,
)
from services.scoring.digests.periods import parse_period
from services.scoring.kpi.lines import DEFAULT_LINES
from shared.catalogue import GRADES, KPI_KEYS

W49 = parse_period("2026-W49")  # 30 Nov .. 6 Dec 2026; W48 before, W50 after
GRADE_OR_NONE = [*GRADES, None]


# previous grade, this grade -> crossing (every other pair: None)
TABLE = {
    ("qualified", "unqualified"): "fell_below",
    ("excellent", "unqualified"): "fell_below",
    ("unqualified", "qualified"): "recovered",
    ("unqualified", "excellent"): "recovered",
}


@pytest.mark.parametrize(("before", "now"), list(itertools.product(GRADE_OR_NONE, repeat=2)))
def test_crossed_line_decision_table(before: str | None, now: str | None) -> None:
    # Insufficient data or no grade on either side is not a crossing: nobody knows.
    assert crossing(before, now) == TABLE.get((before, now))


def csat(satisfied: int, surveys: int) -> dict[str, tuple[float, int]]:
    return {"customer_satisfaction": (float(satisfied), surveys)}


def test_the_digest_pools_members_and_compares_with_the_previous_period() -> None:
    members = [
        # 9/10 -> 7/10: fell below 0.85
        MemberSums("s1", "Li Wei", now=csat(7, 10), before=csat(9, 10)),
        # 5/10 -> 10/10: recovered
        MemberSums("s2", "王芳", now=csat(10, 10), before=csat(5, 10)),
        # 2/3 -> 3/3: too few samples both times, no crossing
        MemberSums("s3", None, now=csat(3, 3), before=csat(2, 3)),
    ]
    d = build_digest(
        team_id="north",
        team_name="North",
        timezone="Asia/Shanghai",
        period=W49,
        members=members,
        plans=[],
        lines=DEFAULT_LINES,
    )
    assert (d.period.name, d.previous.name, d.members) == ("2026-W49", "2026-W48", 3)
    # Every catalogue key, in its order: keys added to the catalogue appear by themselves.
    assert [k.kpi for k in d.kpis] == list(KPI_KEYS)
    c = d.kpis[0]
    assert c.kpi == "customer_satisfaction"
    assert (c.value, c.samples, c.previous_value, c.previous_samples) == (
        pytest.approx(20 / 23),
        23,
        pytest.approx(16 / 23),
        23,
    )
    assert c.change == pytest.approx(4 / 23)
    assert (c.grade, c.previous_grade, c.qualified, c.higher_is_better) == (
        "qualified",
        "unqualified",
        0.85,
        True,
    )
    rt = next(k for k in d.kpis if k.kpi == "avg_response_time_hours")
    assert (rt.value, rt.change, rt.samples, rt.higher_is_better) == (None, None, 0, False)
    training = next(k for k in d.kpis if k.kpi == "training_sessions")
    assert (training.value, training.samples, training.grade) == (0, 0, None)
    assert [(x.specialist_id, x.kpi, x.direction) for x in d.crossed] == [
        ("s1", "customer_satisfaction", "fell_below"),
        ("s2", "customer_satisfaction", "recovered"),
    ]
    assert d.crossed[0].value == pytest.approx(0.7)
    assert d.crossed[0].previous_value == pytest.approx(0.9)


def test_a_team_without_members_has_empty_kpis_and_nothing_crossed() -> None:
    d = build_digest(
        team_id="t",
        team_name=None,
        timezone="UTC",
        period=W49,
        members=[],
        plans=[],
        lines=DEFAULT_LINES,
    )
    assert d.members == 0 and d.crossed == [] and d.plans_due == []
    assert all(k.value is None or k.value == 0 for k in d.kpis)


def test_plans_due_next_period_or_overdue() -> None:
    day = dt.date
    plans = [
        UnclosedPlan(
            "s2",
            "王芳",
            "2026Q4",
            "open",
            (
                ("customer_satisfaction", 0.9, day(2026, 12, 6)),  # last day of W49: overdue
                ("resolution_rate", 0.95, day(2026, 12, 13)),  # last day of W50: due
                ("record_accuracy", 0.98, day(2026, 12, 14)),  # after W50: not yet
            ),
        ),
        UnclosedPlan("s1", "Li Wei", "2026Q3", "draft", (("nps", 10.0, day(2026, 9, 30)),)),
        UnclosedPlan("s3", None, "2026Q4", "on_track", (("nps", 10.0, day(2027, 1, 30)),)),
    ]
    out = plans_due(plans, W49)
    assert [(p.specialist_id, p.quarter) for p in out] == [("s1", "2026Q3"), ("s2", "2026Q4")]
    assert [(g.kpi, g.overdue) for g in out[1].goals] == [
        ("customer_satisfaction", True),
        ("resolution_rate", False),
    ]
    assert out[0].goals[0].overdue


sums = st.dictionaries(
    st.sampled_from(list(KPI_KEYS)),
    st.tuples(st.integers(0, 50), st.integers(0, 50)).map(lambda t: (float(min(t)), max(t))),
)


@given(st.lists(st.tuples(sums, sums), max_size=6))
def test_crossings_agree_with_each_members_own_grades(pairs: list[tuple[dict, dict]]) -> None:
    members = [MemberSums(f"s{i}", None, now=a, before=b) for i, (a, b) in enumerate(pairs)]
    d = build_digest(
        team_id="t",
        team_name=None,
        timezone="UTC",
        period=W49,
        members=members,
        plans=[],
        lines=DEFAULT_LINES,
    )
    expected = []
    for m in members:
        alone = build_digest(
            team_id="t",
            team_name=None,
            timezone="UTC",
            period=W49,
            members=[m],
            plans=[],
            lines=DEFAULT_LINES,
        )
        for k in alone.kpis:
            direction = crossing(k.previous_grade, k.grade)
            if direction is not None:
                expected.append((m.specialist_id, k.kpi, direction))
    assert [(c.specialist_id, c.kpi, c.direction) for c in d.crossed] == expected
    # Pooled samples are the members' samples added up.
    for k in d.kpis:
        if k.kpi != "training_sessions":
            assert k.samples == sum(m.now.get(k.kpi, (0, 0))[1] for m in members)
