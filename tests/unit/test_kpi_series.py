"""Daily series: each point and its 7-day rolling value against a reference over member buckets."""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.kpi.grading import KpiValue, evaluate
from services.scoring.kpi.lines import DEFAULT_LINES
from services.scoring.kpi.series import daily_points, lookback_start
from services.scoring.kpi.windows import Window
from shared.catalogue import KPI_KEYS

BASE = dt.date(2026, 3, 1)
member_buckets = st.dictionaries(
    st.tuples(st.sampled_from("abc"), st.integers(0, 30)),
    st.tuples(st.integers(0, 20), st.integers(0, 20)),
    max_size=40,
)


def same(got: KpiValue, want: KpiValue) -> bool:
    def close(x: float | None, y: float | None) -> bool:
        return (x is None) == (y is None) and (x is None or math.isclose(x, y or 0, abs_tol=1e-9))

    return (
        close(got.value, want.value)
        and close(got.numerator, want.numerator)
        and got.denominator == want.denominator
        and got.grade == want.grade
    )


@given(
    buckets=member_buckets,
    kpi=st.sampled_from(KPI_KEYS),
    first=st.integers(0, 30),
    days=st.integers(1, 20),
)
def test_points_pool_members_then_sum_seven_days(
    buckets: dict[tuple[str, int], tuple[int, int]], kpi: str, first: int, days: int
) -> None:
    line = DEFAULT_LINES[kpi]
    # The members' buckets added per day, as the team query does.
    pooled: dict[dt.date, tuple[float, int]] = {}
    for (_, day), (n, k) in buckets.items():
        date = BASE + dt.timedelta(days=day)
        old = pooled.get(date, (0.0, 0))
        pooled[date] = (old[0] + n, old[1] + k)
    start = BASE + dt.timedelta(days=first)
    points = daily_points(kpi, pooled, start, days, line)
    assert [p.day for p in points] == [start + dt.timedelta(days=i) for i in range(days)]
    for p in points:
        # Reference: straight from the member buckets, no pooled map in between.
        def sums(lo: dt.date, hi: dt.date) -> tuple[float, int]:
            chosen = [
                v for (_, day), v in buckets.items() if lo <= BASE + dt.timedelta(days=day) <= hi
            ]
            return float(sum(n for n, _ in chosen)), sum(k for _, k in chosen)

        week = p.day - dt.timedelta(days=6)
        day_window = Window("1d", p.day, p.day, "days")
        assert same(p.value, evaluate(kpi, *sums(p.day, p.day), line, day_window))
        want = evaluate(kpi, *sums(week, p.day), line, Window("7d", week, p.day, "days"))
        assert same(p.rolling, want), (p, want)


def test_rolling_is_a_ratio_of_sums_not_a_mean_of_ratios() -> None:
    # 9/10 one day, 0/1 the next: 9/11 over both days, not (0.9 + 0) / 2.
    buckets = {BASE: (9.0, 10), BASE + dt.timedelta(days=1): (0.0, 1)}
    line = DEFAULT_LINES["customer_satisfaction"]
    last = daily_points("customer_satisfaction", buckets, BASE, 2, line)[-1]
    assert last.rolling.value == 9 / 11 and last.value.value == 0.0
    nps = daily_points(
        "nps",
        {BASE: (3.0, 4), BASE + dt.timedelta(days=6): (-1.0, 4)},
        BASE,
        7,
        DEFAULT_LINES["nps"],
    )
    assert nps[-1].rolling.value == 25.0  # (3 - 1) / 8 x 100


def test_lookback_stops_at_the_first_date() -> None:
    assert lookback_start(dt.date(2026, 3, 7)) == dt.date(2026, 3, 1)
    assert lookback_start(dt.date(1, 1, 3)) == dt.date.min
    points = daily_points("nps", {dt.date.min: (1.0, 1)}, dt.date.min, 2, DEFAULT_LINES["nps"])
    assert [p.rolling.denominator for p in points] == [1, 1]
