"""Calendar of the time partitions: which week a claim belongs to, what retention may drop."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# Weeks run Monday..Sunday in UTC (1970-01-05 was a Monday); migration 0020 uses the same grid.
ORIGIN = dt.date(1970, 1, 5)
WIDTH_DAYS = 7
PREFIX = "processed_events_p"
_NAME = re.compile(r"^processed_events_p(\d{8})$")


def week_floor(day: dt.date) -> dt.date:
    """First day of the partition week holding ``day``."""
    return ORIGIN + dt.timedelta(days=(day - ORIGIN).days // WIDTH_DAYS * WIDTH_DAYS)


def bucket_for(at: dt.datetime) -> dt.date:
    """The bucket (partition lower bound) a claim made at ``at`` should write to."""
    return week_floor(at.astimezone(dt.UTC).date())


def partition_name(lower: dt.date) -> str:
    return f"{PREFIX}{lower:%Y%m%d}"


def partition_lower(name: str) -> dt.date | None:
    """Lower bound of a weekly partition from its name; None for any other table."""
    m = _NAME.match(name)
    if m is None:
        return None
    return dt.datetime.strptime(m.group(1), "%Y%m%d").date()


@dataclass(frozen=True)
class Bucket:
    """A partition's life: writable from opened_at until closed_at (None while open)."""

    lower: dt.date
    opened_at: dt.datetime
    closed_at: dt.datetime | None


def droppable(
    partitions: list[dt.date],
    buckets: list[Bucket],
    now: dt.datetime,
    retention_days: int,
) -> list[dt.date]:
    """Partitions (by lower bound) whose every id was first seen before the horizon.

    A closed bucket's claims all committed before it was closed (the switch waits for them
    under the exclusive claim lock), so closed_at bounds first_seen_at from above. A
    partition never opened holds no ids once the open bucket is past it. The open bucket
    and anything not yet opened ahead of it are never dropped.
    """
    if retention_days <= 0:
        return []
    horizon = now - dt.timedelta(days=retention_days)
    by_lower = {b.lower: b for b in buckets}
    opened = [b.lower for b in buckets if b.closed_at is None]
    current = opened[0] if opened else None
    out: list[dt.date] = []
    for lower in sorted(partitions):
        bucket = by_lower.get(lower)
        if bucket is None:
            # Never written: empty, and harmless to drop once the open bucket is past it.
            if current is not None and lower < current:
                out.append(lower)
        elif bucket.closed_at is not None and bucket.closed_at <= horizon:
            out.append(lower)
    return out
