"""The bare one-process pipeline: the limit reference the scoring consumer is measured against.

Usage: .venv/bin/python bench/bench_bare_pipeline.py [--events 100000] [--batch 4000]

What a Python consumer doing counters only costs, with every durability step the real one has
and nothing more: one aiokafka consumer (``getmany``), msgspec decode into a Struct, in-batch
dedup by event id, then one PostgreSQL transaction per batch that claims the event ids in a
real dedup table (``INSERT ... ON CONFLICT DO NOTHING RETURNING``), upserts per-day counters
aggregated in Python with one ``unnest`` statement and stores the partitions' next offsets;
only after that commit are the offsets committed to Kafka. No ticket state, no ledger, no
outbox, no validation beyond the Struct's types: the gap between this and the scoring consumer
is what the product's features cost. ``make bench`` (run_all.py) runs it on the same messages
as the scoring consumer, in the same run; alone it starts an embedded PostgreSQL and broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import psutil
from aiokafka import TopicPartition

from shared.kafka import create_consumer

# The bare pipeline's own tables: the same shapes as processed_events and kpi_daily (text
# keys, a primary-key B-tree each), none of the product's other columns or indexes.
SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_processed_events (
    event_id text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bare_daily (
    specialist_id text NOT NULL,
    day date NOT NULL,
    metric text NOT NULL,
    num double precision NOT NULL,
    den bigint NOT NULL,
    PRIMARY KEY (specialist_id, day, metric)
);
CREATE TABLE IF NOT EXISTS bare_offsets (
    group_id text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
"""

CLAIM = """
INSERT INTO bare_processed_events (event_id)
SELECT i FROM unnest($1::text[]) AS u(i) ORDER BY i
ON CONFLICT DO NOTHING
RETURNING event_id
"""

UPSERT = """
INSERT INTO bare_daily (specialist_id, day, metric, num, den)
SELECT s, d, m, n, c FROM unnest($1::text[], $2::date[], $3::text[], $4::float8[], $5::bigint[])
    AS u(s, d, m, n, c)
ORDER BY s, d, m
ON CONFLICT (specialist_id, day, metric) DO UPDATE
SET num = bare_daily.num + excluded.num, den = bare_daily.den + excluded.den
"""

OFFSETS = """
INSERT INTO bare_offsets (group_id, topic, partition, next_offset)
SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
ORDER BY t, p
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = greatest(bare_offsets.next_offset, excluded.next_offset)
"""


class BareEvent(msgspec.Struct, frozen=True):
    """The fields a counter needs; every other field of the message is skipped by the decoder."""

    event_id: str
    type: str
    occurred_at: datetime
    specialist_id: str | None = None
    ticket_id: str | None = None
    score: int | None = None


DECODER = msgspec.json.Decoder(BareEvent)


def aggregate(events: list[BareEvent], tz: ZoneInfo) -> dict[tuple[str, date, str], list[float]]:
    """Per (specialist, local day, event type): [sum of scores or count, count].

    A survey naming only its ticket counts under the ticket (the bare pipeline keeps no
    ticket state to find the specialist).
    """
    out: dict[tuple[str, date, str], list[float]] = {}
    for e in events:
        who = e.specialist_id or e.ticket_id or e.event_id
        key = (who, e.occurred_at.astimezone(tz).date(), e.type)
        cell = out.get(key)
        num = 1.0 if e.score is None else float(e.score)
        if cell is None:
            out[key] = [num, 1]
        else:
            cell[0] += num
            cell[1] += 1
    return out


async def prepare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("TRUNCATE bare_processed_events, bare_daily, bare_offsets")
    finally:
        await conn.close()


async def wal_lsn(conn: asyncpg.Connection) -> int:
    """Bytes of WAL written so far by the cluster (pg_current_wal_lsn as a number)."""
    return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


def children_cpu() -> float:
    """CPU seconds of this process's children (the embedded PostgreSQL and broker) so far."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


async def run(
    bootstrap: str, topic: str, dsn: str, total: int, batch: int = 4000, tz: str = "Asia/Shanghai"
) -> dict[str, Any]:
    """Consume ``total`` messages of ``topic`` through the bare pipeline; figures of the run.

    The clock starts at the first fetched record (after the group join) and stops once the
    offsets covering every message are committed in PostgreSQL and Kafka.
    """
    await prepare(dsn)
    zone = ZoneInfo(tz)
    group = f"bare-pipeline-{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(dsn)
    consumer = create_consumer(
        bootstrap,
        group_id=group,
        client_id="bench-bare-pipeline",
        topics_=[topic],
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    seen = duplicates = applied = 0
    started: float | None = None
    cpu0 = children0 = 0.0
    wal0 = await wal_lsn(conn)
    try:
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
            records = [r for recs in fetched.values() for r in recs]
            if not records:
                continue
            if started is None:
                started = time.perf_counter()
                cpu0, children0, wal0 = time.process_time(), children_cpu(), await wal_lsn(conn)
            first: dict[str, BareEvent] = {}
            nxt: dict[tuple[str, int], int] = {}
            for r in records:
                event = DECODER.decode(r.value or b"")
                first.setdefault(event.event_id, event)
                nxt[(r.topic, r.partition)] = r.offset + 1
            ids = sorted(first)
            async with conn.transaction():
                claimed = {row[0] for row in await conn.fetch(CLAIM, ids)}
                agg = aggregate([first[i] for i in ids if i in claimed], zone)
                if agg:
                    keys = list(agg)
                    vals = list(agg.values())
                    await conn.execute(
                        UPSERT,
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        [k[2] for k in keys],
                        [v[0] for v in vals],
                        [int(v[1]) for v in vals],
                    )
                tps = sorted(nxt)
                await conn.execute(
                    OFFSETS, group, [t for t, _ in tps], [p for _, p in tps], [nxt[k] for k in tps]
                )
            # After the database commit: a crash in between re-reads the batch, which the
            # dedup table makes a no-op.
            await consumer.commit({TopicPartition(*k): v for k, v in nxt.items()})
            seen += len(records)
            applied += len(claimed)
            duplicates += len(records) - len(claimed)
        elapsed = time.perf_counter() - (started or time.perf_counter())
        cpu = time.process_time() - cpu0
        children = children_cpu() - children0
        wal = await wal_lsn(conn) - wal0
        rss = psutil.Process().memory_info().rss / 2**20
        rows = int(await conn.fetchval("SELECT count(*) FROM bare_daily"))
    finally:
        await consumer.stop()
        await conn.close()
    return {
        "events_per_s": seen / elapsed,
        "events": seen,
        "applied": applied,
        "duplicates": duplicates,
        "daily_rows": rows,
        "seconds": elapsed,
        "cpu_us_per_event": 1e6 * cpu / seen,
        "children_us_per_event": 1e6 * children / seen,
        "wal_bytes_per_event": wal / seen,
        "rss_mb": rss,
    }


async def main_async(args: argparse.Namespace) -> None:
    import bench_scoring

    from shared.embedded import EmbeddedBroker, EmbeddedPostgres
    from shared.kafka import ensure_topics

    home = Path(tempfile.mkdtemp(prefix="kpi-bench-bare-"))
    pg = EmbeddedPostgres(home / "pg")
    broker = EmbeddedBroker(log_path=home / "broker.log")
    pg.start()
    broker.start()
    try:
        topic = f"bare{uuid.uuid4().hex[:6]}.kpi.events"
        await ensure_topics(broker.bootstrap, 6, [topic])
        messages = bench_scoring.make_events(args.events, seed=1, tag="s")
        await bench_scoring.produce(broker.bootstrap, topic, messages)
        count = len(messages)
        del messages
        for i in range(args.repeat):
            url = pg.create_database(f"bare_{uuid.uuid4().hex[:6]}")
            res = await run(
                broker.bootstrap, topic, "postgresql://" + url.split("://", 1)[1], count, args.batch
            )
            print(
                f"bare pipeline run {i + 1}: {res['events_per_s']:,.0f} events/s "
                f"({res['events']} messages, {res['duplicates']} duplicates, {res['daily_rows']} "
                f"daily rows); CPU {res['cpu_us_per_event']:.1f} µs/event, PostgreSQL + broker "
                f"{res['children_us_per_event']:.1f} µs/event, WAL "
                f"{res['wal_bytes_per_event']:.0f} B/event, RSS {res['rss_mb']:.0f} MB; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        broker.stop()
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=2)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
