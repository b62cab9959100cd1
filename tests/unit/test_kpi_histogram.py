"""Time distribution buckets and percentile estimates (issue 17): the stated error holds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.kpi.histogram import (
    BOUNDS,
    FACTOR,
    LARGEST,
    OVERFLOW_BUCKET,
    PERCENTILES,
    RELATIVE_ERROR,
    SMALLEST,
    ZERO_BUCKET,
    bucket_of,
    bucket_range,
    distribution,
    percentile,
)


def exact_percentile(values: list[float], p: float) -> float:
    """Nearest rank, computed plainly: the ceil(p·n)-th smallest value."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(p * len(ordered), 9)))
    return ordered[rank - 1]


def counts_of(values: list[float]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        out[bucket_of(v)] = out.get(bucket_of(v), 0) + 1
    return out


hours = st.one_of(
    st.floats(min_value=SMALLEST, max_value=LARGEST, exclude_max=True),
    st.floats(min_value=0.0, max_value=10_000.0),
    st.sampled_from([0.0, SMALLEST, 1.0, 24.0, *BOUNDS[1:6]]),
)


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(hours, min_size=1, max_size=300), p=st.sampled_from([*PERCENTILES, 0.01, 1.0])
)
def test_percentile_estimate_is_within_the_stated_relative_error(
    values: list[float], p: float
) -> None:
    estimate = percentile(counts_of(values), p)
    exact = exact_percentile(values, p)
    assert estimate is not None
    if exact < SMALLEST:
        assert estimate == 0.0 and exact - estimate < SMALLEST
    else:
        assert abs(estimate - exact) <= RELATIVE_ERROR * exact * (1 + 1e-12), (estimate, exact)


@given(value=st.floats(min_value=0.0, max_value=1e12))
def test_every_value_lies_in_its_bucket(value: float) -> None:
    low, high = bucket_range(bucket_of(value))
    assert low <= value and (high is None or value < high)


def test_bucket_layout() -> None:
    assert pytest.approx(2 ** (1 / 16) - 1) == RELATIVE_ERROR and RELATIVE_ERROR < 0.045
    assert bucket_of(0.0) == ZERO_BUCKET and bucket_of(SMALLEST / 2) == ZERO_BUCKET
    assert bucket_of(SMALLEST) == 1 and bucket_of(LARGEST) == OVERFLOW_BUCKET
    assert bucket_of(math.inf) == OVERFLOW_BUCKET
    assert OVERFLOW_BUCKET < 2**15  # a smallint
    for i in range(1, OVERFLOW_BUCKET):
        low, high = bucket_range(i)
        assert high is not None and high / low == pytest.approx(FACTOR)
    assert LARGEST > 24 * 365  # a year of hours is not overflow


def test_distribution_counts_mean_and_histogram() -> None:
    values = [0.0, 0.5, 0.5, 2.0, 30.0, LARGEST * 2]
    dist = distribution(counts_of(values), sum(values), len(values))
    assert dist.count == 6 and dist.mean == pytest.approx(sum(values) / 6)
    assert sum(n for _, _, n in dist.buckets) == 6
    assert dist.buckets[0] == (0.0, SMALLEST, 1) and dist.buckets[-1] == (LARGEST, None, 1)
    assert dist.percentiles[0.5] == pytest.approx(0.5, rel=RELATIVE_ERROR)
    assert dist.percentiles[0.99] == LARGEST  # overflow: a lower bound only
    empty = distribution({}, 0.0, 0)
    assert (empty.count, empty.mean, empty.percentiles[0.5], empty.buckets) == (0, None, None, [])
