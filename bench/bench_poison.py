"""What poison isolation costs: scoring over the same stream without and with poison records.

Usage: .venv/bin/python bench/bench_poison.py [--events 40000] [--poison 0,1,5,20]
Starts an embedded PostgreSQL and broker, produces the realistic mix of bench_scoring.py to
a 6-partition topic once per run (plus the poison records at random places), and runs the
scoring consumer in this process until every offset is stored in PostgreSQL. A poison record
is a valid event the database refuses (a trigger raises for its id, like a value PostgreSQL
cannot store before validation matched storage): the consumer bisects the batch it is in,
commits every good record and dead-letters the poison one. Prints, per run: events/s, the
extra seconds per poison record against the clean run, dead letters; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_scoring  # noqa: E402

from migrations import upgrade  # noqa: E402
from services.scoring.engine.consumer import ScoringConsumer  # noqa: E402
from shared.db import create_engine, create_sessionmaker  # noqa: E402
from shared.embedded import EmbeddedBroker, EmbeddedPostgres  # noqa: E402
from shared.events import (  # noqa: E402
    encode_event,
    partition_key,
    validate_event_obj,
)
from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import load_settings  # noqa: E402
from shared.topics import Topics  # noqa: E402

REFUSE = (
    """
    CREATE FUNCTION bench_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.event_id LIKE 'poison-%' THEN
            RAISE EXCEPTION 'refused: %', NEW.event_id;
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER bench_refuse_poison BEFORE INSERT ON processed_events
        FOR EACH ROW EXECUTE FUNCTION bench_refuse_poison()
    """,
)


def poisoned(messages: list[tuple[bytes, bytes]], n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``messages`` with ``n`` poison audits inserted at random places."""
    rng = random.Random(seed)
    out = list(messages)
    for i in range(n):
        event = validate_event_obj(
            {
                "event_id": f"poison-{i}",
                "type": "record.audited",
                "occurred_at": "2026-09-15T10:00:00Z",
                "specialist_id": f"sp{i:04d}",
                "accurate": True,
            }
        )
        out.insert(rng.randrange(len(out) + 1), (partition_key(event), encode_event(event)))
    return out


async def run(
    pg: EmbeddedPostgres, bootstrap: str, messages: list[tuple[bytes, bytes]], poison: int
) -> tuple[float, int]:
    """Seconds until every offset is stored, and how many records were dead-lettered."""
    url = pg.create_database(f"poison_{uuid.uuid4().hex[:6]}")
    await asyncio.to_thread(upgrade, url)
    topics = Topics(f"p{uuid.uuid4().hex[:6]}.")
    await ensure_topics(bootstrap, 6, topics.all)
    stream = poisoned(messages, poison, seed=poison)
    await bench_scoring.produce(bootstrap, topics.events, stream)
    engine = create_engine(url, pool_size=4, application_name="bench-poison")
    async with engine.begin() as conn:
        for statement in REFUSE:
            await conn.exec_driver_sql(statement)
    settings = load_settings(
        database_url=url, kafka_bootstrap=bootstrap, topic_prefix=topics.prefix
    )
    consumer = ScoringConsumer(
        settings,
        create_sessionmaker(engine),
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        consumer_options={"session_timeout_ms": 3000, "heartbeat_interval_ms": 500},
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    started = None
    try:
        while True:
            async with engine.connect() as conn:
                stored = (
                    await conn.execute(
                        text("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets")
                    )
                ).scalar_one()
            if started is None and stored > 0:
                started = time.perf_counter()
            if stored >= len(stream):
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.stop()
        await task
        await consumer.close()
        await engine.dispose()
    assert consumer.quarantine is not None
    return elapsed, consumer.quarantine.count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--poison", default="0,1,5,20", help="poison records per run")
    args = parser.parse_args()
    counts = [int(x) for x in args.poison.split(",")]
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-poison-"))
    pg = EmbeddedPostgres(home / "pg")
    broker = EmbeddedBroker(log_path=home / "broker.log")
    pg.start()
    broker.start()
    try:
        messages = bench_scoring.make_events(args.events, seed=7, tag="p")
        clean: float | None = None
        for n in counts:
            seconds, dead = await run(pg, broker.bootstrap, messages, n)
            rate = (len(messages) + n) / seconds
            line = f"poison {n:>3}: {rate:,.0f} events/s ({seconds:.2f} s), dead-lettered {dead}"
            if n == 0:
                clean = seconds
            elif clean is not None:
                line += f", +{(seconds - clean) / n:.2f} s per poison record"
            print(line, flush=True)
    finally:
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
