"""A batch's aggregate writes (day buckets, ledger, channels, time buckets) in one statement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from services.scoring.db import Conn
from services.scoring.engine.breakdown_writes import BucketKey, ChannelKey
from services.scoring.engine.repository import (
    DailyKey,
    FactKey,
    _columns,
    _text_array,
    delete_facts,
)

# One round trip instead of four (five when ledger rows cancel out), with the same rows as
# add_daily, add_facts, add_channels and add_buckets run one after the other:
#
# - Tables are written in the same order as those calls (kpi_daily, kpi_facts,
#   kpi_channel_daily, kpi_time_buckets), each in primary-key order: every scoring
#   transaction, of this release or the one before, takes the shared rows' locks in one
#   global order, so two replicas cannot deadlock. A data-modifying CTE runs when it is first
#   read, and ``(SELECT count(*) FROM x) >= 0`` is a one-time filter read before the
#   statement's first row: it runs ``x`` to the end before the next table is touched.
# - The sub-statements share one snapshot and cannot see each other's rows, so the ledger
#   rows that cancel to 0/0 cannot be upserted and then deleted in one statement. They are
#   deleted instead of upserted: the DELETE's condition is the sum the upsert would have
#   stored (same float8 arithmetic, same 1e-9), and PostgreSQL re-checks it on the newest
#   version of a row that changed since the snapshot. The upsert takes every other key,
#   except a delta of 0/0 for a row that does not exist (inserted then deleted before: no
#   row either way); such a delta on a row that does exist is added by an UPDATE.
# - A ledger row is only ever written by the transaction that holds its source's lock
#   (ticket or session state row, or the claimed event id), so no other transaction
#   inserts one between the snapshot and the upsert. Should one do so anyway, a row the
#   upsert leaves at 0/0 comes back and is deleted by a second statement, as before.
_WRITE_AGGREGATES = """
WITH dly AS (
    INSERT INTO kpi_daily (specialist_id, day, metric, num, den, updated_at)
    SELECT s, d, m, n, c, now()
    FROM unnest($1::text::text[], $2::date[], $3::text::text[], $4::float8[], $5::bigint[])
        AS u(s, d, m, n, c)
    ORDER BY s COLLATE "C", d, m COLLATE "C"
    ON CONFLICT (specialist_id, day, metric) DO UPDATE
    SET num = kpi_daily.num + excluded.num, den = kpi_daily.den + excluded.den,
        updated_at = excluded.updated_at
    RETURNING 1
), fin AS (
    SELECT s, m, d, src, n, c
    FROM unnest($6::text::text[], $7::text::text[], $8::date[], $9::text::text[],
                $10::float8[], $11::bigint[])
        AS u(s, m, d, src, n, c)
), fdel AS (
    DELETE FROM kpi_facts f USING fin u
    WHERE (SELECT count(*) FROM dly) >= 0
      AND f.specialist_id = u.s AND f.metric = u.m AND f.day = u.d AND f.source = u.src
      AND f.den + u.c = 0 AND abs(f.num + u.n) < 1e-9
    RETURNING f.specialist_id AS s, f.metric AS m, f.day AS d, f.source AS src
), fup AS (
    INSERT INTO kpi_facts (specialist_id, metric, day, source, num, den)
    SELECT u.s, u.m, u.d, u.src, u.n, u.c FROM fin u
    WHERE (SELECT count(*) FROM fdel) >= 0
      AND NOT (u.c = 0 AND abs(u.n) < 1e-9)
      AND NOT EXISTS (
          SELECT FROM fdel g WHERE g.s = u.s AND g.m = u.m AND g.d = u.d AND g.src = u.src)
    ORDER BY u.s COLLATE "C", u.m COLLATE "C", u.d, u.src COLLATE "C"
    ON CONFLICT (specialist_id, metric, day, source) DO UPDATE
    SET num = kpi_facts.num + excluded.num, den = kpi_facts.den + excluded.den
    RETURNING specialist_id, metric, day, source, num, den
), fnz AS (
    UPDATE kpi_facts f SET num = f.num + u.n, den = f.den + u.c
    FROM fin u
    WHERE (SELECT count(*) FROM fup) >= 0
      AND u.c = 0 AND abs(u.n) < 1e-9
      AND f.specialist_id = u.s AND f.metric = u.m AND f.day = u.d AND f.source = u.src
      AND NOT EXISTS (
          SELECT FROM fdel g WHERE g.s = u.s AND g.m = u.m AND g.d = u.d AND g.src = u.src)
    RETURNING f.specialist_id, f.metric, f.day, f.source, f.num, f.den
), chn AS (
    INSERT INTO kpi_channel_daily (specialist_id, day, metric, channel, num, den)
    SELECT s, d, m, ch, n, c
    FROM unnest($12::text::text[], $13::date[], $14::text::text[], $15::text[],
                $16::float8[], $17::bigint[])
        AS u(s, d, m, ch, n, c)
    WHERE (SELECT count(*) FROM fnz) >= 0
    ORDER BY s COLLATE "C", d, m COLLATE "C", ch COLLATE "C"
    ON CONFLICT (specialist_id, day, metric, channel) DO UPDATE
    SET num = kpi_channel_daily.num + excluded.num,
        den = kpi_channel_daily.den + excluded.den
    RETURNING 1
), bkt AS (
    INSERT INTO kpi_time_buckets (specialist_id, day, metric, bucket, count)
    SELECT s, d, m, b, c
    FROM unnest($18::text::text[], $19::date[], $20::text::text[], $21::smallint[],
                $22::bigint[])
        AS u(s, d, m, b, c)
    WHERE (SELECT count(*) FROM chn) >= 0
    ORDER BY s COLLATE "C", d, m COLLATE "C", b
    ON CONFLICT (specialist_id, day, metric, bucket) DO UPDATE
    SET count = kpi_time_buckets.count + excluded.count
    RETURNING 1
)
SELECT z.specialist_id, z.metric, z.day, z.source
FROM (SELECT * FROM fup UNION ALL SELECT * FROM fnz) z
WHERE (SELECT count(*) FROM bkt) >= 0 AND z.den = 0 AND abs(z.num) < 1e-9
"""


async def write_aggregates(
    conn: Conn,
    daily: Mapping[DailyKey, tuple[float, int]],
    facts: Mapping[FactKey, tuple[float, int]],
    channels: Mapping[ChannelKey, tuple[float, int]],
    buckets: Mapping[BucketKey, int],
) -> None:
    """Apply the deltas to kpi_daily, kpi_facts (ledger rows that cancel to 0/0 are
    removed), kpi_channel_daily and kpi_time_buckets: the rows of the four separate writes."""
    if not (daily or facts or channels or buckets):
        return
    d_who, d_days, d_metrics = _columns(list(daily), 3)
    d_nums, d_dens = _columns(list(daily.values()), 2)
    f_who, f_metrics, f_days, f_sources = _columns(list(facts), 4)
    f_nums, f_dens = _columns(list(facts.values()), 2)
    c_who, c_days, c_metrics, c_channels = _columns(list(channels), 4)
    c_nums, c_dens = _columns(list(channels.values()), 2)
    b_who, b_days, b_metrics, b_buckets = _columns(list(buckets), 4)
    rows = await conn.fetch(
        _WRITE_AGGREGATES,
        _text_array(d_who),
        d_days,
        _text_array(d_metrics),
        d_nums,
        d_dens,
        _text_array(f_who),
        _text_array(f_metrics),
        f_days,
        _text_array(f_sources),
        f_nums,
        f_dens,
        _text_array(c_who),
        c_days,
        _text_array(c_metrics),
        # Channels are free text from the source: the binary array, not a literal.
        c_channels,
        c_nums,
        c_dens,
        _text_array(b_who),
        b_days,
        _text_array(b_metrics),
        b_buckets,
        list(buckets.values()),
    )
    if rows:
        zero: Sequence[tuple[str, str, dt.date, str]] = sorted(
            (r[0], r[1], r[2], r[3]) for r in rows
        )
        await delete_facts(conn, zero)
