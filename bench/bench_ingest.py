"""Ingest throughput (raw topic -> kpi.events) beside a bare aiokafka consume+produce loop.

Usage: .venv/bin/python bench/bench_ingest.py [--events 100000] [--rounds 2] [--no-db]

Starts an embedded broker and PostgreSQL (unless KPI_KAFKA_BOOTSTRAP / KPI_DATABASE_URL
are set), loads realistic 300-500 byte events (5 % invalid) onto the raw topics once, then
in each round times, on the same data, (a) a bare loop: getmany -> send each value as-is ->
await acks -> commit, and (b) the ingest service's own consumer path (BatchLoop +
KafkaIntake: validate, normalise, publish, await acks, stats upsert, commit). The clock
starts at the first record (group join excluded) and stops when every input is handled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer

from services.ingest.handlers import KafkaIntake
from services.ingest.publisher import BrokerHealth
from shared.db import create_engine, create_sessionmaker
from shared.kafka import BatchLoop, Record, create_consumer, create_producer, ensure_topics
from shared.topics import Topics

TYPES = [
    ("tickets", "ticket.created"),
    ("tickets", "ticket.first_response"),
    ("tickets", "ticket.closed"),
    ("tickets", "ticket.followup"),
    ("surveys", "survey.csat"),
    ("surveys", "survey.nps"),
]


def make_event(i: int, rng: random.Random) -> tuple[str, bytes, bytes]:
    which, kind = TYPES[i % len(TYPES)]
    ticket = f"TCK-{rng.randrange(2_000_000):08d}"
    obj: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "type": kind,
        "occurred_at": f"2026-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:07.123+08:00",
        "source": "zendesk",
        "ticket_id": ticket,
        "specialist_id": f"spec-{rng.randrange(500):04d}",
        "schema_version": 1,
        "channel": "email",
        "customer": {"id": f"cust-{rng.randrange(10**6)}", "tier": "gold", "region": "cn-east"},
        "subject": "Printer keeps jamming after the firmware update " + "x" * rng.randrange(90),
    }
    if kind == "ticket.closed":
        obj["resolved"] = bool(i % 3)
    if kind == "survey.csat":
        obj["score"] = 1 + i % 5
    if kind == "survey.nps":
        obj["score"] = i % 11
    if i % 20 == 7:  # a realistic trickle of bad input
        obj["occurred_at"] = "2026-03-01 09:30"
    return which, ticket.encode(), orjson.dumps(obj)


async def load(bootstrap: str, topics: Topics, n: int) -> int:
    rng = random.Random(42)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    size = 0
    try:
        futures = []
        for i in range(n):
            which, key, value = make_event(i, rng)
            size += len(value)
            topic = topics.tickets if which == "tickets" else topics.surveys
            futures.append(await producer.send(topic, value, key=key))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return size // n


async def _timed(bootstrap: str, topics: Topics, n: int, handler_factory: Any, name: str) -> float:
    consumer = create_consumer(
        bootstrap,
        group_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
        client_id=f"bench-{name}",
        topics_=topics.raw,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = create_producer(bootstrap, client_id=f"bench-{name}", linger_ms=10)
    await producer.start()
    await consumer.start()
    done = asyncio.Event()
    state = {"seen": 0, "first": 0.0, "last": 0.0}
    inner = handler_factory(producer)

    async def handler(records: list[Record]) -> None:
        if not state["seen"]:
            state["first"] = time.perf_counter()
        await inner(records)
        state["seen"] += len(records)
        if state["seen"] >= n:
            state["last"] = time.perf_counter()
            done.set()

    loop = BatchLoop(consumer, handler, name=name, max_records=2000)
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(done.wait(), timeout=600)
    finally:
        loop.stop()
        await task
        await consumer.stop()
        await producer.stop()
    return n / (state["last"] - state["first"])


def bare_factory(out_topic: str) -> Any:
    def factory(producer: AIOKafkaProducer) -> Any:
        async def handle(records: list[Record]) -> None:
            futures = [await producer.send(out_topic, r.value, key=r.key) for r in records]
            await asyncio.gather(*futures)

        return handle

    return factory


def ingest_factory(topics: Topics, sessionmaker: Any) -> Any:
    def factory(producer: AIOKafkaProducer) -> Any:
        return KafkaIntake(producer, topics, sessionmaker, BrokerHealth())

    return factory


async def main_async(args: argparse.Namespace) -> None:
    from shared.embedded import EmbeddedBroker, EmbeddedPostgres

    started: list[Any] = []
    tmp = Path(tempfile.mkdtemp(prefix="kpi-bench-"))
    try:
        bootstrap = os.environ.get("KPI_KAFKA_BOOTSTRAP", "")
        if not bootstrap:
            broker = EmbeddedBroker(log_path=tmp / "broker.log")
            broker.start()
            started.append(broker)
            bootstrap = broker.bootstrap
        sessionmaker = None
        engine = None
        if not args.no_db:
            url = os.environ.get("KPI_DATABASE_URL", "")
            if not url:
                pg = EmbeddedPostgres(tmp / "pgdata")
                pg.start()
                started.append(pg)
                url = pg.create_database("kpi_bench")
            from migrations import upgrade

            await asyncio.to_thread(upgrade, url)
            engine = create_engine(url, pool_size=2, application_name="bench")
            sessionmaker = create_sessionmaker(engine)

        topics = Topics(f"bench{uuid.uuid4().hex[:6]}.")
        await ensure_topics(bootstrap, args.partitions, topics.all)
        await ensure_topics(bootstrap, args.partitions, [topics.prefix + "bare.out"])
        t0 = time.perf_counter()
        avg = await load(bootstrap, topics, args.events)
        print(
            f"loaded {args.events} events (avg {avg} B, 5% invalid) on {args.partitions} "
            f"partitions in {time.perf_counter() - t0:.1f}s"
        )
        bare_rates, ingest_rates = [], []
        for r in range(args.rounds):
            bare = await _timed(
                bootstrap, topics, args.events, bare_factory(topics.prefix + "bare.out"), "bare"
            )
            ingest = await _timed(
                bootstrap, topics, args.events, ingest_factory(topics, sessionmaker), "ingest"
            )
            bare_rates.append(bare)
            ingest_rates.append(ingest)
            print(
                f"round {r + 1}: bare {bare:,.0f} msg/s   ingest {ingest:,.0f} msg/s   "
                f"ratio {ingest / bare:.0%}"
            )
        b, i = statistics.median(bare_rates), statistics.median(ingest_rates)
        print(
            f"\nbare aiokafka consume+produce : {b:,.0f} msg/s (median of {args.rounds})\n"
            f"ingest service path{' (no DB)' if args.no_db else ''}      : {i:,.0f} msg/s\n"
            f"ratio ingest/bare             : {i / b:.0%}  (target >= 50%)"
        )
        if engine is not None:
            await engine.dispose()
    finally:
        for server in reversed(started):
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--no-db", action="store_true", help="skip the stats upsert")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
