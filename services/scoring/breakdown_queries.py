"""Read-side SQL of the channel breakdown (kpi_channel_daily) and time distributions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from services.scoring.db import Db

Sums = dict[str, tuple[float, int]]  # per metric (num, den), as queries.Sums

# One index range scan per specialist on the (specialist_id, day, metric, channel) key.
_CHANNEL_SUMS = """
    SELECT c.channel, c.metric, sum(c.num) AS num, sum(c.den) AS den
    FROM kpi_channel_daily c
    WHERE c.specialist_id = ANY($1::text[]) AND c.day BETWEEN $2 AND $3
    GROUP BY c.channel, c.metric
    HAVING sum(c.den) <> 0
"""


async def channel_sums(
    db: Db, specialist_ids: Collection[str], start: dt.date, end: dt.date
) -> dict[str, Sums]:
    """Per channel, the (num, den) per metric pooled over ``specialist_ids`` and the window.

    Channels whose shares all moved away (0/0, a late ``ticket.created``) are left out.
    """
    out: dict[str, Sums] = {}
    if not specialist_ids:
        return out
    rows = await db.fetch(_CHANNEL_SUMS, sorted(set(specialist_ids)), start, end)
    for r in rows:
        out.setdefault(r["channel"], {})[r["metric"]] = (float(r["num"]), int(r["den"]))
    return out


_BUCKETS = """
    SELECT b.bucket, sum(b.count) AS count
    FROM kpi_time_buckets b
    WHERE b.specialist_id = ANY($1::text[]) AND b.metric = $2 AND b.day BETWEEN $3 AND $4
    GROUP BY b.bucket
    HAVING sum(b.count) <> 0
"""
_MEAN = """
    SELECT coalesce(sum(d.num), 0) AS num, coalesce(sum(d.den), 0) AS den
    FROM kpi_daily d
    WHERE d.specialist_id = ANY($1::text[]) AND d.metric = $2 AND d.day BETWEEN $3 AND $4
"""


@dataclass(frozen=True)
class BucketCounts:
    """One metric's distribution inputs over a window: bucket counts and kpi_daily's sums."""

    counts: dict[int, int]
    num: float
    den: int


async def bucket_counts(
    db: Db, specialist_ids: Collection[str], metric: str, start: dt.date, end: dt.date
) -> BucketCounts:
    """Bucket counts of ``metric`` pooled over ``specialist_ids``, with its exact sums."""
    ids = sorted(set(specialist_ids))
    if not ids:
        return BucketCounts({}, 0.0, 0)
    rows = await db.fetch(_BUCKETS, ids, metric, start, end)
    sums = await db.fetchrow(_MEAN, ids, metric, start, end)
    num, den = (0.0, 0) if sums is None else (float(sums["num"]), int(sums["den"]))
    return BucketCounts({int(r["bucket"]): int(r["count"]) for r in rows}, num, den)
