"""Time distributions: fixed log-spaced hour buckets, and percentiles estimated from them."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final, TypeAlias

from shared.catalogue import AVG_RESPONSE_TIME_HOURS

# The two time measures whose per-ticket values are bucketed (SPEC §3 and §3a).
DISTRIBUTED_METRICS: Final[tuple[str, ...]] = (AVG_RESPONSE_TIME_HOURS, "resolution_time_hours")
DISTRIBUTED: Final[frozenset[str]] = frozenset(DISTRIBUTED_METRICS)

# Each bucket is FACTOR times wider than the one below: 8 per doubling.
STEPS_PER_DOUBLING: Final = 8
FACTOR: Final = 2.0 ** (1.0 / STEPS_PER_DOUBLING)
# Bucket 0 holds [0, SMALLEST) (under ~0.9 s, "zero"); buckets 1..SPAN hold
# [SMALLEST·FACTOR^(i-1), SMALLEST·FACTOR^i); bucket SPAN + 1 holds LARGEST and above
# (~1.9 years, "overflow"). 26 doublings: 210 buckets, a smallint each.
SMALLEST: Final = 2.0**-12
DOUBLINGS: Final = 26
SPAN: Final = DOUBLINGS * STEPS_PER_DOUBLING
ZERO_BUCKET: Final = 0
OVERFLOW_BUCKET: Final = SPAN + 1
# BOUNDS[i] is the lower edge of bucket i + 1 (the upper edge of bucket i).
BOUNDS: Final[tuple[float, ...]] = tuple(
    SMALLEST * 2.0 ** (i / STEPS_PER_DOUBLING) for i in range(SPAN + 1)
)
LARGEST: Final = BOUNDS[-1]

# An estimate is the geometric middle of its bucket, so for an exact percentile x in
# [SMALLEST, LARGEST): |estimate - x| / x <= sqrt(FACTOR) - 1 (about 4.43 %). In the zero
# bucket the error is below SMALLEST hours in absolute terms; in the overflow bucket the
# estimate is LARGEST, a lower bound only.
RELATIVE_ERROR: Final = math.sqrt(FACTOR) - 1.0
METHOD: Final = (
    f"log-spaced buckets (factor 2^(1/{STEPS_PER_DOUBLING})), nearest-rank percentile, "
    "geometric bucket middle"
)
PERCENTILES: Final[tuple[float, ...]] = (0.5, 0.9, 0.99)

# (specialist_id, local date, metric, bucket) -> count
BucketKey: TypeAlias = tuple[str, date, str, int]


def bucket_of(hours: float) -> int:
    """The bucket of a duration in hours (negative durations never reach here: excluded)."""
    if hours < SMALLEST:
        return ZERO_BUCKET
    return bisect_right(BOUNDS, hours)


def bucket_range(bucket: int) -> tuple[float, float | None]:
    """``[lower, upper)`` of a bucket in hours; upper is None for the overflow bucket."""
    if bucket == ZERO_BUCKET:
        return 0.0, SMALLEST
    if bucket >= OVERFLOW_BUCKET:
        return LARGEST, None
    return BOUNDS[bucket - 1], BOUNDS[bucket]


def representative(bucket: int) -> float:
    """The value a percentile falling in ``bucket`` is estimated as."""
    if bucket == ZERO_BUCKET:
        return 0.0
    if bucket >= OVERFLOW_BUCKET:
        return LARGEST
    low, high = BOUNDS[bucket - 1], BOUNDS[bucket]
    return math.sqrt(low * high)


def nearest_rank(p: float, count: int) -> int:
    """1-based rank of the ``p`` percentile among ``count`` values: ceil(p·count), at least 1."""
    # Rounded first so 0.9 * 10 (9.000000000000002) is rank 9, not 10.
    return max(1, math.ceil(round(p * count, 9)))


def percentile(counts: Mapping[int, int], p: float) -> float | None:
    """Estimate of the nearest-rank ``p`` percentile of the bucketed values; None when empty."""
    total = sum(c for c in counts.values() if c > 0)
    if total == 0:
        return None
    rank = nearest_rank(p, total)
    seen = 0
    for bucket in sorted(counts):
        n = counts[bucket]
        if n <= 0:
            continue
        seen += n
        if seen >= rank:
            return representative(bucket)
    return None  # pragma: no cover - seen reaches total


@dataclass(frozen=True)
class Distribution:
    """What the distribution routes answer for one metric and window."""

    count: int
    mean: float | None
    percentiles: dict[float, float | None]
    buckets: list[tuple[float, float | None, int]]  # (lower, upper, count), non-empty only


def distribution(counts: Mapping[int, int], num: float, den: int) -> Distribution:
    """Percentiles and histogram from bucket counts; the mean is exact (kpi_daily's sums)."""
    kept = {b: n for b, n in counts.items() if n > 0}
    return Distribution(
        count=sum(kept.values()),
        mean=num / den if den else None,
        percentiles={p: percentile(kept, p) for p in PERCENTILES},
        buckets=[(*bucket_range(b), kept[b]) for b in sorted(kept)],
    )
