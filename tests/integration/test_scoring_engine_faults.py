"""Scoring engine as real processes: SIGKILL while the stream flows, two processes, relay."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kpi.stack import ServiceProcess
from services.scoring import snapshots
from services.scoring.engine.handlers import process_batch
from services.scoring.engine.relay import ScoreRelay
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.windows import parse_window
from shared.catalogue import CATALOGUE, KPI_KEYS
from shared.db import create_sessionmaker, session_scope
from shared.events import Event, encode_event, partition_key
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.test_scoring_engine import (
    TZ,
    HistoryMaker,
    check_against_reference,
    deliveries,
)
from tests.kafka_helpers import consume_until, wait_for
from tests.service_helpers import service_env, start_service

POISON = [b"not json", b'{"type": "ticket.closed", "event_id": "p1"}']


def _env(database_url: str, bootstrap: str, topics: Topics, **extra: str) -> dict[str, str]:
    return service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=topics.prefix,
        KPI_TIMEZONE="America/New_York",
        KPI_SCORING_SESSION_TIMEOUT_MS="3000",
        KPI_LOG_FORMAT="text",
        **extra,
    )


async def _applied_offsets(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        got = await conn.execute(
            text("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE next_offset > 0")
        )
        return int(got.scalar_one())


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


def _kill(svc: ServiceProcess) -> None:
    assert svc.proc is not None
    os.killpg(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait(10)
    svc.proc = None


async def _produce(
    producer: AIOKafkaProducer, topic: str, chunk: list[tuple[bytes, bytes]]
) -> None:
    futures = [await producer.send(topic, value, key=key) for key, value in chunk]
    await asyncio.gather(*futures)


def _messages(events: list[Event]) -> list[tuple[bytes, bytes]]:
    out = []
    for i, e in enumerate(events):
        value = encode_event(e)
        if i % 3 == 0:  # as ingest sends it: the canonical event plus an _ingest envelope
            value = value[:-1] + b',"_ingest":{"via":"kafka"}}'
        out.append((partition_key(e), value))
    return out


async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    bootstrap: str, database_url: str, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    topics = Topics(f"c{uuid.uuid4().hex[:8]}.")
    await ensure_topics(bootstrap, 3, topics.all)
    rng = random.Random(20261129)
    events = HistoryMaker(rng, prefix="c").history(tickets=250, sessions=6, loose=80)
    delivered = deliveries(rng, events, dup_rate=0.1)
    messages = _messages(delivered) + [(b"poison", p) for p in POISON]
    rng.shuffle(messages)
    env = _env(database_url, bootstrap, topics, KPI_SCORING_MAX_BATCH="40")
    svc = start_service("scoring", env, tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    kills = 0
    try:
        for start in range(0, len(messages), 150):
            await _produce(producer, topics.events, messages[start : start + 150])
            await asyncio.sleep(rng.uniform(0.5, 2.5))
            if svc.proc is not None:
                _kill(svc)
                kills += 1
                svc.start()
        # A couple more kills once everything is on the broker, then let it finish.
        for _ in range(2):
            await asyncio.sleep(rng.uniform(1.5, 3.0))
            _kill(svc)
            kills += 1
            svc.start()

        async def drained() -> bool:
            return await _applied_offsets(clean_db) == len(messages)

        await wait_for(drained, timeout=90)
        unique = {e.event_id for e in delivered}
        processed = await _count(clean_db, "processed_events")
        cells = await check_against_reference(clean_db, delivered)
        dead = await consume_until(bootstrap, topics.deadletter, lambda r: len(r) >= 2, 20)
        print(
            f"kills={kills} produced={len(messages)} unique={len(unique)} "
            f"lost={len(unique) - processed} reference_cells={cells} mismatches=0 "
            f"deadlettered={len(dead)}"
        )
        assert processed == len(unique)  # lost = 0
        assert kills >= 5
        assert {orjson.loads(r.value)["original"] for r in dead if r.value} >= {
            p.decode() for p in POISON
        }
    finally:
        await producer.stop()
        svc.stop()


async def test_two_processes_on_six_partitions_equal_the_reference(
    bootstrap: str, database_url: str, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    topics = Topics(f"d{uuid.uuid4().hex[:8]}.")
    await ensure_topics(bootstrap, 6, topics.all)
    rng = random.Random(7)
    events = HistoryMaker(rng, prefix="d").history(tickets=300, sessions=6, loose=100)
    delivered = deliveries(rng, events, dup_rate=0.1)
    messages = _messages(delivered)
    env = _env(database_url, bootstrap, topics, KPI_SCORING_MAX_BATCH="100")
    services = [start_service("scoring", env, tmp_path) for _ in range(2)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for start in range(0, len(messages), 200):
            await _produce(producer, topics.events, messages[start : start + 200])
            await asyncio.sleep(0.3)

        async def drained() -> bool:
            return await _applied_offsets(clean_db) == len(messages)

        await wait_for(drained, timeout=90)
        await check_against_reference(clean_db, delivered)
        assert await _count(clean_db, "consumer_offsets") == 6

        # The relay: every affected specialist gets a kpi.scores message equal to a snapshot.
        async def outbox_empty() -> bool:
            return await _count(clean_db, "score_outbox") == 0

        await wait_for(outbox_empty, timeout=30)
        scores = await consume_until(bootstrap, topics.scores, lambda r: len(r) >= 4, 20)
        latest: dict[str, dict[str, Any]] = {}
        for rec in scores:
            assert rec.value is not None and rec.key is not None
            body = orjson.loads(rec.value)
            assert rec.key.decode() == body["specialist_id"]
            latest[body["specialist_id"]] = body
        assert set(latest) == {"s1", "s2", "s3", "s4"}
        body = latest["s1"]
        assert body["window"]["name"] == "30d" and body["window"]["timezone"] == TZ.key
        assert set(body["kpis"]) == set(KPI_KEYS)
        as_of = datetime.fromisoformat(body["as_of"]).date()
        async with create_sessionmaker(clean_db)() as session:
            want = await snapshots.window_kpis(session, ["s1"], parse_window("30d", as_of))
        assert body["kpis"] == {
            k: {**v.to_dict(), "higher_is_better": CATALOGUE[k].higher_is_better}
            for k, v in want["s1"].items()
        }
    finally:
        await producer.stop()
        for svc in services:
            svc.stop()


async def test_relay_publishes_changes_and_moves_with_the_clock(
    bootstrap: str, clean_db: AsyncEngine
) -> None:
    topics = Topics(f"r{uuid.uuid4().hex[:8]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    settings = load_settings(kafka_bootstrap=bootstrap, topic_prefix=topics.prefix, timezone=TZ.key)
    sessionmaker = create_sessionmaker(clean_db)
    maker = HistoryMaker(random.Random(3), prefix="r")
    events = [
        maker.event(
            "record.audited",
            specialist_id="s1",
            accurate=False,
            occurred_at="2026-03-31T23:59:59.999-04:00",
        ),
        maker.event(
            "survey.peer_review",
            specialist_id="s2",
            reviewer_id="x",
            score=5,
            occurred_at="2026-04-01T00:00:00-04:00",
        ),
    ]
    async with session_scope(sessionmaker) as session:
        await process_batch(session, events, measure=Measure(TZ))
    now = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        relay = ScoreRelay(settings, sessionmaker, producer, clock=lambda: now)
        assert await relay.publish_once() == 2
        assert await relay.publish_once() == 0  # nothing left: at most once per change
        now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # 30 days on: the audit left 30d
        assert await relay.sweep() == 2
        assert await relay.publish_once() == 2
        records = await consume_until(bootstrap, topics.scores, lambda r: len(r) >= 4, 20)
        bodies = [orjson.loads(r.value or b"") for r in records]
        assert [b["reason"] for b in bodies] == ["events", "events", "clock", "clock"]
        first = {b["specialist_id"]: b for b in bodies[:2]}
        assert first["s1"]["kpis"]["record_accuracy"]["denominator"] == 1
        assert first["s1"]["window"] == {
            "name": "30d",
            "from": "2026-03-03",
            "to": "2026-04-01",
            "timezone": TZ.key,
        }
        later = {b["specialist_id"]: b for b in bodies[2:]}
        assert later["s1"]["as_of"] == "2026-05-01"
        assert later["s1"]["kpis"]["record_accuracy"]["denominator"] == 0
        assert later["s2"]["kpis"]["collaboration_score"]["denominator"] == 0
    finally:
        await producer.stop()
