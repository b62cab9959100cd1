"""Scoring consumer throughput and batch latency beside a bare consume+decode loop.

Usage: .venv/bin/python bench/bench_scoring.py [--events 100000] [--batch 4000] [--long 10]
    [--order realistic|shuffled|both] [--processes N]
Starts an embedded PostgreSQL and broker (unless KPI_DATABASE_URL / KPI_KAFKA_BOOTSTRAP are
set), produces a realistic mix (1000 specialists, 5 % duplicates) to a 6-partition topic,
then measures in the same run: (1) aiokafka getmany + decode_event, (2) the scoring
consumer committing to PostgreSQL. By default (``--order both``) it does so twice, on a
fresh database each: the realistic arrival order (by occurred_at; 5 % displaced by up to
4 h, 1 % late by 1-5 days, duplicates within 30 min) and the same messages uniformly
shuffled over the 60 days (stress case). ``--long N`` repeats (2) on N times more events
to check that memory stays flat. ``--processes N`` runs N consumer processes in one group
(replicas; one per core is the deployment this machine is sized for). Prints figures;
asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from sqlalchemy import text

from migrations import upgrade
from services.scoring.engine.consumer import ScoringConsumer
from services.scoring.engine.handlers import BatchResult
from shared.db import create_engine, create_sessionmaker
from shared.embedded import EmbeddedBroker, EmbeddedPostgres
from shared.events import decode_event, encode_event, partition_key, validate_event_obj
from shared.kafka import create_consumer, create_producer, ensure_topics
from shared.settings import load_settings
from shared.topics import Topics

SPECIALISTS = [f"sp{i:04d}" for i in range(1000)]


ORDERS = ("realistic", "shuffled")
# Realistic arrival (order "realistic"): each event reaches the broker shortly after it
# happened; some are displaced (a connector retrying, a queue catching up) and a few are
# very late (an export replayed days later). Duplicates arrive soon after the original.
DISPLACED, DISPLACED_MAX = 0.05, timedelta(hours=4)
VERY_LATE, VERY_LATE_MIN, VERY_LATE_MAX = 0.01, timedelta(days=1), timedelta(days=5)
DUPLICATE_DELAY_MAX = timedelta(minutes=30)


def make_events(n: int, seed: int, tag: str, order: str = "realistic") -> list[tuple[bytes, bytes]]:
    """Ticket lifecycles plus surveys, audits, peer reviews over 60 days; ~5 % exact duplicates.

    Both orders produce the same multiset of messages (same seed => same events and
    duplicates); only the arrival order differs: "realistic" is by occurred_at plus the
    bounded delays above, "shuffled" is a uniform shuffle of all of them (stress case: every
    batch touches tickets and days all over the 60 days).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    rng = random.Random(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    out: list[tuple[datetime, bytes, bytes]] = []
    seq = 0

    def ev(kind: str, at: datetime, **fields: Any) -> None:
        nonlocal seq
        seq += 1
        obj = {"event_id": f"{tag}-{seq}", "type": kind, "occurred_at": at.isoformat(), **fields}
        event = validate_event_obj(obj)
        out.append((at, partition_key(event), encode_event(event)))

    t = 0
    while len(out) < n:
        t += 1
        tid, who = f"{tag}-t{t}", rng.choice(SPECIALISTS)
        at = start + timedelta(minutes=rng.randint(0, 60 * 24 * 60))
        ev("ticket.created", at, ticket_id=tid, specialist_id=who)
        if rng.random() < 0.1:
            who = rng.choice(SPECIALISTS)
            ev("ticket.assigned", at + timedelta(minutes=5), ticket_id=tid, specialist_id=who)
        ev(
            "ticket.first_response",
            at + timedelta(hours=rng.uniform(0.1, 30)),
            ticket_id=tid,
            specialist_id=who,
        )
        closed = at + timedelta(hours=rng.uniform(1, 72))
        ev("ticket.closed", closed, ticket_id=tid, specialist_id=who, resolved=rng.random() < 0.9)
        if rng.random() < 0.05:
            ev("ticket.reopened", closed + timedelta(hours=2), ticket_id=tid)
            ev(
                "ticket.closed",
                closed + timedelta(hours=5),
                ticket_id=tid,
                specialist_id=who,
                resolved=True,
            )
        if rng.random() < 0.8:
            ev("ticket.followup", closed + timedelta(days=1), ticket_id=tid, specialist_id=who)
        if rng.random() < 0.6:
            ev("survey.csat", closed + timedelta(hours=3), ticket_id=tid, score=rng.randint(1, 5))
        if rng.random() < 0.3:
            ev(
                "survey.nps",
                closed + timedelta(hours=3),
                ticket_id=tid,
                specialist_id=who,
                score=rng.randint(0, 10),
            )
        if rng.random() < 0.2:
            ev(
                "record.audited",
                closed,
                specialist_id=who,
                ticket_id=tid,
                accurate=rng.random() < 0.95,
            )
        if rng.random() < 0.1:
            ev(
                "survey.peer_review",
                closed,
                specialist_id=who,
                reviewer_id=rng.choice(SPECIALISTS),
                score=rng.randint(1, 5),
            )
    out = out[:n]
    # Arrival time of each message: its occurred_at plus seconds, hours (displaced) or days
    # (very late); a duplicate (redelivery, HTTP + Kafka) arrives up to 30 min after its original.
    arrivals: list[tuple[datetime, int, bytes, bytes]] = []
    for i, (at, key, value) in enumerate(out):
        roll = rng.random()
        if roll < VERY_LATE:
            delay = VERY_LATE_MIN + (VERY_LATE_MAX - VERY_LATE_MIN) * rng.random()
        elif roll < VERY_LATE + DISPLACED:
            delay = DISPLACED_MAX * rng.random()
        else:
            delay = timedelta(seconds=rng.uniform(0, 60))
        arrivals.append((at + delay, i, key, value))
    for dup in rng.sample(arrivals, n // 20):
        arrivals.append((dup[0] + DUPLICATE_DELAY_MAX * rng.random(), len(arrivals), *dup[2:]))
    if order == "shuffled":
        rng.shuffle(arrivals)
    else:
        arrivals.sort()
    return [(key, value) for _, _, key, value in arrivals]


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = create_producer(bootstrap, client_id="bench", acks=1, linger_ms=10)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(topic, v, key=k) for k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(messages) / (time.perf_counter() - started)


async def bare_loop(bootstrap: str, topic: str, total: int) -> float:
    consumer = create_consumer(
        bootstrap,
        group_id=f"bare-{uuid.uuid4().hex[:6]}",
        client_id="bench-bare",
        topics_=[topic],
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=4000)
            for recs in batches.values():
                if started is None:
                    started = time.perf_counter()
                for r in recs:
                    decode_event(r.value or b"")
                seen += len(recs)
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - (started or time.perf_counter()))


def _children_cpu(proc: psutil.Process) -> float:
    """CPU seconds of child processes (the embedded PostgreSQL and broker) so far."""
    total = 0.0
    for child in proc.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def scoring_run(
    settings: Any, url: str, total: int, batch: int, sample_rss: bool, parallel: int
) -> dict[str, Any]:
    engine = create_engine(url, pool_size=max(4, parallel), application_name="bench-scoring")
    sessionmaker = create_sessionmaker(engine)
    latencies: list[float] = []
    sizes: list[int] = []
    rss: list[float] = []
    proc = psutil.Process()

    def on_batch(result: BatchResult, seconds: float) -> None:
        latencies.append(seconds)
        sizes.append(result.received)
        if sample_rss and len(latencies) % 10 == 0:
            rss.append(proc.memory_info().rss / 2**20)

    consumer = ScoringConsumer(
        settings,
        sessionmaker,
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        max_records=batch,
        consumer_options={"session_timeout_ms": 3000, "heartbeat_interval_ms": 500},
        on_batch=on_batch,
        parallel=parallel,
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    started = None
    cpu_started = time.process_time()
    children_started = _children_cpu(proc)
    try:
        while sum(sizes) < total:
            if sizes and started is None:
                started = time.perf_counter() - latencies[0]
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
        elapsed = time.perf_counter() - (started or time.perf_counter())
        cpu = time.process_time() - cpu_started
        children_cpu = _children_cpu(proc) - children_started
    finally:
        consumer.stop()
        await task
        await consumer.close()
        await engine.dispose()
    lat = sorted(latencies)
    return {
        "events_per_s": sum(sizes) / elapsed,
        "cpu_us_per_event": 1e6 * cpu / sum(sizes),
        "children_us_per_event": 1e6 * children_cpu / sum(sizes),
        "batches": len(lat),
        "mean_batch": statistics.mean(sizes),
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "rss": rss,
    }


def _consumer_process(
    settings_kwargs: dict[str, Any],
    batch: int,
    parallel: int,
    group_id: str,
    stop: Any,
    results: Any,
    ready: Any,
    go: Any,
) -> None:
    """One scoring consumer in its own process (a replica); reports its figures on exit."""

    async def run() -> None:
        settings = load_settings(**settings_kwargs)
        engine = create_engine(
            settings_kwargs["database_url"],
            pool_size=max(4, parallel),
            application_name="bench-scoring",
        )
        latencies: list[float] = []
        sizes: list[int] = []
        consumer = ScoringConsumer(
            settings,
            create_sessionmaker(engine),
            group_id=group_id,
            max_records=batch,
            consumer_options={"session_timeout_ms": 3000, "heartbeat_interval_ms": 500},
            on_batch=lambda result, seconds: (
                latencies.append(seconds),
                sizes.append(result.received),
            ),
            parallel=parallel,
        )
        await consumer.start()
        assert consumer.consumer is not None
        # Join the group before consuming: a member joining mid-run would stop every
        # member for a rebalance and make the figure depend on start-up timing.
        for _ in range(2400):  # up to 2 minutes; the parent gives up after that too
            if consumer.consumer.assignment():
                break
            await asyncio.sleep(0.05)
        ready.put(1)
        await asyncio.to_thread(go.wait)
        task = asyncio.create_task(consumer.run())
        cpu_started = time.process_time()
        # The parent sets ``stop`` in every case, so the waiting thread always ends.
        stopped = asyncio.create_task(asyncio.to_thread(stop.wait))
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        consumer.stop()
        await task
        cpu = time.process_time() - cpu_started
        await consumer.close()
        await engine.dispose()
        rss = psutil.Process().memory_info().rss / 2**20
        results.put({"latencies": latencies, "sizes": sizes, "cpu": cpu, "rss": rss})

    asyncio.run(run())


async def scoring_run_processes(
    settings_kwargs: dict[str, Any], url: str, total: int, batch: int, processes: int, parallel: int
) -> dict[str, Any]:
    """``processes`` scoring consumers in one group (replicas, one per core), each its own
    process; the rate counts from the first committed batch until the offsets stored in
    PostgreSQL cover every record."""
    ctx = multiprocessing.get_context("spawn")
    stop, results, ready, go = ctx.Event(), ctx.Queue(), ctx.Queue(), ctx.Event()
    group_id = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [
        ctx.Process(
            target=_consumer_process,
            args=(settings_kwargs, batch, parallel, group_id, stop, results, ready, go),
            name=f"scoring-{i}",
        )
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    # Every member holds partitions of the same generation once the last one has some.
    for _ in procs:
        await asyncio.to_thread(ready.get, True, 120)
    go.set()
    me = psutil.Process()
    children_started = 0.0
    conn = await asyncpg.connect("postgresql://" + url.split("://", 1)[1])
    try:
        first: tuple[float, int] | None = None
        while True:
            done = int(
                await conn.fetchval(
                    "SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint "
                    "FROM consumer_offsets WHERE group_id = $1",
                    group_id,
                )
            )
            if done and first is None:
                first = (time.perf_counter(), done)
                children_started = _children_cpu(me)
            if done >= total:
                break
            if not any(p.is_alive() for p in procs):
                raise RuntimeError("every scoring process exited before the end")
            await asyncio.sleep(0.02)
        assert first is not None
        elapsed = time.perf_counter() - first[0]
        cpu_all = _children_cpu(me) - children_started
    finally:
        await conn.close()
        stop.set()
    reports = [await asyncio.to_thread(results.get, True, 60) for _ in procs]
    for proc in procs:
        proc.join(30)
    lat = sorted(x for r in reports for x in r["latencies"])
    sizes = [x for r in reports for x in r["sizes"]]
    consumers_cpu = sum(r["cpu"] for r in reports)
    return {
        "events_per_s": (total - first[1]) / elapsed,
        # Consumer CPU is per process from its own start; the rest is PostgreSQL + broker.
        "cpu_us_per_event": 1e6 * consumers_cpu / total,
        "children_us_per_event": max(0.0, 1e6 * (cpu_all - consumers_cpu) / total),
        "batches": len(lat),
        "mean_batch": statistics.mean(sizes),
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "rss": [r["rss"] for r in reports],
        "processes": processes,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--parallel", type=int, default=2, help="concurrent transactions")
    parser.add_argument(
        "--processes",
        type=int,
        default=min(6, os.cpu_count() or 1),
        help="scoring consumer processes in one group, like replicas (default: one per core, "
        "at most the 6 partitions); 1 runs the consumer inside this process",
    )
    parser.add_argument("--long", type=int, default=0, help="also run N x events for memory")
    parser.add_argument(
        "--order",
        choices=(*ORDERS, "both"),
        default="both",
        help="arrival order: realistic (time-ordered with late events), shuffled (uniform "
        "shuffle of the same messages, stress case) or both (default)",
    )
    args = parser.parse_args()
    orders = list(ORDERS) if args.order == "both" else [args.order]

    home = Path(tempfile.mkdtemp(prefix="kpi-bench-"))
    pg = broker = None
    shared_url = os.environ.get("KPI_DATABASE_URL")
    bootstrap = os.environ.get("KPI_KAFKA_BOOTSTRAP")
    if not shared_url:
        pg = EmbeddedPostgres(home / "pg")
        pg.start()
    if not bootstrap:
        broker = EmbeddedBroker(log_path=home / "broker.log")
        broker.start()
        bootstrap = broker.bootstrap
    results: dict[str, float] = {}
    try:
        runs = [(f"short/{o}", o, args.events) for o in orders]
        if args.long:
            runs.append((f"long/{orders[0]}", orders[0], args.events * args.long))
        for name, order, n in runs:
            # A fresh database per run (when embedded) so no run inherits another's tables.
            url = shared_url or pg.create_database(f"bench_{uuid.uuid4().hex[:6]}")  # type: ignore[union-attr]
            await asyncio.to_thread(upgrade, url, "heads")
            topics = Topics(f"b{uuid.uuid4().hex[:6]}.")
            await ensure_topics(bootstrap, 6, topics.all)
            settings_kwargs: dict[str, Any] = {
                "database_url": url,
                "kafka_bootstrap": bootstrap,
                "topic_prefix": topics.prefix,
                "timezone": "Asia/Shanghai",
            }
            settings = load_settings(**settings_kwargs)
            messages = make_events(n, seed=n, tag=name.split("/")[0], order=order)
            rate = await produce(bootstrap, topics.events, messages)
            count = len(messages)
            # The consumer under test must not carry the producer's data in its heap.
            del messages
            gc.collect()
            print(f"[{name}] produced {count} messages ({n} events + 5 % dups) at {rate:,.0f}/s")
            bare = await bare_loop(bootstrap, topics.events, count)
            print(f"[{name}] bare aiokafka getmany + decode_event: {bare:,.0f} events/s")
            long = name.startswith("long")
            if args.processes > 1 and not long:
                res = await scoring_run_processes(
                    settings_kwargs, url, count, args.batch, args.processes, args.parallel
                )
            else:
                res = await scoring_run(settings, url, count, args.batch, long, args.parallel)
            print(
                f"[{name}] scoring consumer x{res.get('processes', 1)} "
                "(committed to PostgreSQL): "
                f"{res['events_per_s']:,.0f} events/s; {res['batches']} batches of "
                f"{res['mean_batch']:.0f}; batch latency p50 {res['p50_ms']:.0f} ms, "
                f"p99 {res['p99_ms']:.0f} ms; consumer process(es) CPU "
                f"{res['cpu_us_per_event']:.0f} µs/event, embedded PostgreSQL + broker CPU "
                f"{res['children_us_per_event']:.0f} µs/event"
            )
            if res["rss"] and not res.get("processes"):
                r = res["rss"]
                tenth = r[max(0, len(r) // 10 - 1)]
                print(
                    f"[{name}] RSS MiB at 10 %: {tenth:.0f}, at end: {r[-1]:.0f}, max: {max(r):.0f}"
                )
            check = create_engine(url)
            async with check.connect() as conn:
                rows = (await conn.execute(text("SELECT count(*) FROM kpi_daily"))).scalar_one()
                done = (
                    await conn.execute(text("SELECT count(*) FROM processed_events"))
                ).scalar_one()
            await check.dispose()
            print(f"[{name}] kpi_daily rows now {rows}, processed_events {done}")
            results[name] = res["events_per_s"]
        print("summary: " + "; ".join(f"{k} {v:,.0f} events/s" for k, v in results.items()))
    finally:
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
