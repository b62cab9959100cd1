"""Scoring engine shortcuts taken for throughput: known specialists, offset fencing, fresh rows."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.engine.consumer import ScoringConsumer
from services.scoring.engine.handlers import Incoming, process_batch
from services.scoring.kpi.measure import Measure
from shared.db import session_scope
from shared.events import Event, encode_event, validate_event_obj
from shared.settings import load_settings
from shared.topics import Topics
from tests.kafka_helpers import SESSION_TIMEOUT_MS, produce, wait_for

TZ = ZoneInfo("Asia/Shanghai")


def ev(event_id: str, kind: str, at: str, **fields: Any) -> Event:
    return validate_event_obj({"event_id": event_id, "type": kind, "occurred_at": at, **fields})


async def scalar_set(sm: async_sessionmaker[AsyncSession], sql: str) -> set[Any]:
    async with sm() as session:
        return {r[0] for r in (await session.execute(text(sql))).all()}


async def test_known_specialists_are_not_reinserted_and_new_ones_are_reported(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    events = [
        ev("e1", "record.audited", "2026-09-01T10:00:00Z", specialist_id="known", accurate=True),
        ev("e2", "record.audited", "2026-09-01T11:00:00Z", specialist_id="new", accurate=False),
    ]
    async with session_scope(sessionmaker) as session:
        result = await process_batch(
            session, events, measure=Measure(TZ), known_specialists={"known"}
        )
    assert result.new_specialists == ["new"]
    # "known" was trusted to exist (it does not here), so only "new" was inserted.
    assert await scalar_set(sessionmaker, "SELECT id FROM specialists") == {"new"}
    # The aggregates do not depend on the cache.
    assert await scalar_set(sessionmaker, "SELECT specialist_id FROM kpi_daily") == {
        "known",
        "new",
    }


async def test_fence_drops_stale_records_per_partition_in_any_order(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    def audit(i: int) -> Event:
        return ev(
            f"a{i}", "record.audited", "2026-09-01T10:00:00Z", specialist_id="s", accurate=True
        )

    first = [Incoming(audit(i), "t", 0, i) for i in range(3)]
    async with session_scope(sessionmaker) as session:
        await process_batch(session, first, measure=Measure(TZ), group_id="g")
    # Partition 0 redelivers offsets 1..2 (stale) out of order with new 3..4; partition 1
    # is new and starts at 0.
    second = [
        Incoming(audit(4), "t", 0, 4),
        Incoming(audit(10), "t", 1, 0),
        Incoming(audit(1), "t", 0, 1),
        Incoming(audit(3), "t", 0, 3),
        Incoming(audit(2), "t", 0, 2),
        Incoming(audit(11), "t", 1, 1),
    ]
    async with session_scope(sessionmaker) as session:
        result = await process_batch(session, second, measure=Measure(TZ), group_id="g")
    assert (result.stale, result.applied, result.duplicates, result.gaps) == (2, 4, 0, {})
    async with sessionmaker() as session:
        offsets = dict(
            (
                await session.execute(
                    text("SELECT partition, next_offset FROM consumer_offsets WHERE group_id='g'")
                )
            ).all()
        )
        den = (await session.execute(text("SELECT sum(den) FROM kpi_daily"))).scalar_one()
    assert offsets == {0: 5, 1: 2}
    assert den == 7


async def test_new_and_existing_tickets_in_one_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    at = "2026-09-01T10:00:00Z"
    async with session_scope(sessionmaker) as session:
        await process_batch(
            session,
            [ev("c1", "ticket.created", at, ticket_id="old", specialist_id="s")],
            measure=Measure(TZ),
        )
    batch = [
        ev(
            "r1",
            "ticket.first_response",
            "2026-09-01T12:00:00Z",
            ticket_id="old",
            specialist_id="s",
        ),
        ev("c2", "ticket.created", at, ticket_id="new", specialist_id="s"),
        ev(
            "r2",
            "ticket.first_response",
            "2026-09-01T11:00:00Z",
            ticket_id="new",
            specialist_id="s",
        ),
    ]
    async with session_scope(sessionmaker) as session:
        await process_batch(session, batch, measure=Measure(TZ))
    async with sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT num, den FROM kpi_daily WHERE metric = 'avg_response_time_hours'")
            )
        ).one()
    assert (row[0], row[1]) == (3.0, 2)
    assert await scalar_set(sessionmaker, "SELECT ticket_id FROM ticket_states") == {"old", "new"}


async def test_repeated_offset_gaps_are_reread_never_skipped(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
) -> None:
    """Records starting past the stored offset are re-read from it, however often that
    happens: only a stored offset below the log start may skip records (retention)."""
    topics = created_topics
    events = [
        ev(f"g{i}", "record.audited", "2026-09-01T10:00:00Z", specialist_id="s", accurate=True)
        for i in range(12)
    ]
    settings = load_settings(
        database_url=database_url, kafka_bootstrap=bootstrap, topic_prefix=topics.prefix
    )
    await produce(bootstrap, topics.events, [encode_event(e) for e in events])
    scorer = ScoringConsumer(
        settings,
        sessionmaker,
        group_id=f"gap-{uuid.uuid4().hex[:8]}",
        consumer_options={"session_timeout_ms": SESSION_TIMEOUT_MS, "heartbeat_interval_ms": 500},
        parallel=1,
    )
    await scorer.start()
    try:
        consumer = scorer.consumer
        assert consumer is not None
        fetched: list[Any] = []

        async def got_all() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            fetched.extend(r for recs in batch.values() for r in recs)
            return len(fetched) >= len(events)

        await wait_for(got_all, timeout=30)
        by_partition: dict[int, list[Any]] = {}
        for rec in fetched:
            by_partition.setdefault(rec.partition, []).append(rec)
        partition, recs = max(by_partition.items(), key=lambda kv: len(kv[1]))
        recs.sort(key=lambda r: r.offset)
        assert len(recs) >= 3, "the test needs one partition with at least three records"
        ids = [orjson.loads(r.value)["event_id"] for r in recs]
        tp = TopicPartition(topics.events, partition)

        await scorer.handle(recs[:1])
        stored = recs[0].offset + 1
        for _ in range(3):  # a "second gap means retention" rule would skip recs[1] here
            result = await scorer.handle(recs[2:])
            assert (topics.events, partition) in result.gaps
            assert await consumer.position(tp) == stored
        assert await scalar_set(sessionmaker, "SELECT event_id FROM processed_events") == {ids[0]}
        await scorer.handle(recs[1:])
        assert await scalar_set(sessionmaker, "SELECT event_id FROM processed_events") == set(ids)
    finally:
        await scorer.close()
