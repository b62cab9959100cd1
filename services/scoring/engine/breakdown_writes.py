"""Engine SQL of issue 17: channel breakdown and time distribution writes, and the check for
surveys that the previous release counted on their own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from services.scoring.db import Conn

# The same bulk-parameter helpers as the other engine writes (kept private to the engine).
from services.scoring.engine.repository import _columns, _text_array

ChannelKey: TypeAlias = tuple[str, dt.date, str, str]
BucketKey: TypeAlias = tuple[str, dt.date, str, int]


async def add_channels(conn: Conn, deltas: Mapping[ChannelKey, tuple[float, int]]) -> None:
    """Apply deltas to kpi_channel_daily (the per-channel breakdown) in primary-key order."""
    who, days, metrics, channels = _columns(list(deltas), 4)
    nums, dens = _columns(list(deltas.values()), 2)
    await conn.execute(
        """
        INSERT INTO kpi_channel_daily (specialist_id, day, metric, channel, num, den)
        SELECT s, d, m, ch, n, c
        FROM unnest($1::text::text[], $2::date[], $3::text::text[], $4::text[],
                    $5::float8[], $6::bigint[])
            AS u(s, d, m, ch, n, c)
        ORDER BY s COLLATE "C", d, m COLLATE "C", ch COLLATE "C"
        ON CONFLICT (specialist_id, day, metric, channel) DO UPDATE
        SET num = kpi_channel_daily.num + excluded.num,
            den = kpi_channel_daily.den + excluded.den
        """,
        _text_array(who),
        days,
        _text_array(metrics),
        # Channels are free text from the source: the binary array, not a literal.
        channels,
        nums,
        dens,
    )


async def add_buckets(conn: Conn, deltas: Mapping[BucketKey, int]) -> None:
    """Apply count deltas to kpi_time_buckets (the time distributions) in primary-key order."""
    who, days, metrics, buckets = _columns(list(deltas), 4)
    await conn.execute(
        """
        INSERT INTO kpi_time_buckets (specialist_id, day, metric, bucket, count)
        SELECT s, d, m, b, c
        FROM unnest($1::text::text[], $2::date[], $3::text::text[], $4::smallint[], $5::bigint[])
            AS u(s, d, m, b, c)
        ORDER BY s COLLATE "C", d, m COLLATE "C", b
        ON CONFLICT (specialist_id, day, metric, bucket) DO UPDATE
        SET count = kpi_time_buckets.count + excluded.count
        """,
        _text_array(who),
        days,
        _text_array(metrics),
        buckets,
        list(deltas.values()),
    )


async def existing_facts(
    conn: Conn, keys: Sequence[tuple[str, str, dt.date, str]]
) -> set[tuple[str, str, dt.date, str]]:
    """Which of the (specialist_id, metric, day, source) facts exist (primary-key probes)."""
    rows = await conn.fetch(
        """
        SELECT f.specialist_id, f.metric, f.day, f.source
        FROM unnest($1::text[], $2::text[], $3::date[], $4::text[]) AS u(s, m, d, src)
        JOIN kpi_facts f
            ON f.specialist_id = u.s AND f.metric = u.m AND f.day = u.d AND f.source = u.src
        """,
        *_columns(list(keys), 4),
    )
    return {(r[0], r[1], r[2], r[3]) for r in rows}
