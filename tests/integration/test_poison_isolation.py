"""Poison records are isolated and dead-lettered; transient failures are retried, never.

A trigger that refuses some event ids makes a real, deterministic database failure in the
middle of a stream (what a value PostgreSQL cannot store did before validation matched
storage); a statement_timeout against a held lock makes a real transient one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.notify.config import NotifyConfig
from services.notify.consumer import ScoresConsumer
from services.scoring.engine.consumer import ScoringConsumer
from shared.db import create_sessionmaker, utcnow
from shared.events import encode_event, partition_key, validate_event_obj
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.notify_support import snapshot
from tests.kafka_helpers import SESSION_TIMEOUT_MS, consume_until, produce, wait_for

POISON_PREFIX = "poison-"


def audit(event_id: str, specialist: str) -> bytes:
    return encode_event(
        validate_event_obj(
            {
                "event_id": event_id,
                "type": "record.audited",
                "occurred_at": "2026-11-02T10:00:00Z",
                "specialist_id": specialist,
                "accurate": True,
            }
        )
    )


def key_of(value: bytes) -> bytes:
    return partition_key(validate_event_obj(orjson.loads(value)))


@pytest.fixture
async def refusing_trigger(clean_db: AsyncEngine) -> AsyncIterator[None]:
    """processed_events refuses ids starting with 'poison-' (a deterministic DB error)."""
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                f"""
                CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.event_id LIKE '{POISON_PREFIX}%' THEN
                        RAISE EXCEPTION 'refused by test trigger: %', NEW.event_id;
                    END IF;
                    RETURN NEW;
                END $$
                """
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON processed_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
            )
        )
    yield
    async with clean_db.begin() as conn:
        await conn.execute(text("DROP TRIGGER refuse_poison ON processed_events"))
        await conn.execute(text("DROP FUNCTION refuse_poison()"))


async def scalar(sm: async_sessionmaker[AsyncSession], sql: str) -> Any:
    async with sm() as session:
        return (await session.execute(text(sql))).scalar_one()


async def run_scoring(
    settings: Any, sm: async_sessionmaker[AsyncSession], until: Any, timeout: float = 60
) -> ScoringConsumer:
    consumer = ScoringConsumer(
        settings,
        sm,
        group_id=f"poison-{uuid.uuid4().hex[:8]}",
        consumer_options={"session_timeout_ms": SESSION_TIMEOUT_MS, "heartbeat_interval_ms": 500},
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(until, timeout=timeout)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)
        await consumer.close()
    return consumer


async def dead_letters(bootstrap: str, topics: Topics, n: int) -> list[dict[str, Any]]:
    records = await consume_until(
        bootstrap, topics.deadletter, lambda recs: len(recs) >= n, timeout=20
    )
    return [orjson.loads(r.value) for r in records]


async def test_scoring_dead_letters_each_poison_record_once_and_counts_the_rest(
    refusing_trigger: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
) -> None:
    topics = created_topics
    good = [audit(f"good-{i}", f"s{i % 5}") for i in range(60)]
    poison = [audit(f"{POISON_PREFIX}{i}", f"s{i}") for i in range(3)]
    stream = good[:20] + poison[:1] + good[20:40] + poison[1:] + good[40:]
    await produce(bootstrap, topics.events, stream, key=key_of)
    settings = load_settings(
        database_url=database_url, kafka_bootstrap=bootstrap, topic_prefix=topics.prefix
    )

    async def done() -> bool:
        offsets = await scalar(
            sessionmaker, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
        )
        return bool(offsets == len(stream))

    consumer = await run_scoring(settings, sessionmaker, done)
    assert await scalar(sessionmaker, "SELECT count(*) FROM processed_events") == 60
    assert (
        await scalar(
            sessionmaker,
            "SELECT sum(den) FROM kpi_daily WHERE metric = 'record_accuracy'",
        )
        == 60
    )
    assert consumer.quarantine is not None and consumer.quarantine.count == 3
    letters = await dead_letters(bootstrap, topics, 3)
    assert len(letters) == 3, "each poison record is dead-lettered exactly once"
    originals = sorted(letter["original"].encode() for letter in letters)
    assert originals == sorted(poison)
    for letter in letters:
        assert letter["code"] == "unprocessable"
        assert letter["exception"].endswith("RaiseError")
        assert letter["source"]["topic"] == "kpi.events"
        assert "refused by test trigger" in letter["reason"]
    incidents = await scalar(
        sessionmaker,
        "SELECT count(*) FROM platform_incidents WHERE kind = 'poison' AND status = 'open'",
    )
    assert incidents == 1


async def all_dead_letters(bootstrap: str, topics: Topics) -> list[bytes]:
    """Every record in kpi.deadletter: read up to a sentinel appended to each partition.

    (The embedded broker's end offsets count batches, not records.)
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        parts = await producer.partitions_for(topics.deadletter)
        for p in parts:
            await producer.send_and_wait(topics.deadletter, b"sentinel", partition=p)
    finally:
        await producer.stop()
    records = await consume_until(
        bootstrap,
        topics.deadletter,
        lambda recs: sum(r.value == b"sentinel" for r in recs) == len(parts),
    )
    return [r.value for r in records if r.value != b"sentinel"]


@pytest.fixture
async def transient_once(clean_db: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The first processed_events insert fails with serialization_failure (40001), once."""
    async with clean_db.begin() as conn:
        await conn.execute(text("CREATE SEQUENCE fail_once_seq"))
        await conn.execute(
            text(
                """
                CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    -- nextval is not rolled back with the failed transaction.
                    IF nextval('fail_once_seq') = 1 THEN
                        RAISE EXCEPTION 'injected serialization failure'
                            USING ERRCODE = 'serialization_failure';
                    END IF;
                    RETURN NULL;
                END $$
                """
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER fail_once BEFORE INSERT ON processed_events "
                "FOR EACH STATEMENT EXECUTE FUNCTION fail_once()"
            )
        )
    yield clean_db
    async with clean_db.begin() as conn:
        await conn.execute(text("DROP TRIGGER fail_once ON processed_events"))
        await conn.execute(text("DROP FUNCTION fail_once()"))
        await conn.execute(text("DROP SEQUENCE fail_once_seq"))


async def test_scoring_dead_letters_an_invalid_record_once_when_its_batch_is_retried(
    transient_once: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
) -> None:
    """A transient failure re-reads the batch: its invalid records are dead-lettered once."""
    topics = created_topics
    good = [audit(f"r-{i}", f"s{i % 5}") for i in range(30)]
    invalid = [
        b'{"event_id": "nul\\u0000id", "type": "record.audited"}',
        b"not json at all",
        b'{"event_id": "lone\\ud800", "type": "record.audited"}',
    ]
    stream = good[:10] + invalid[:1] + good[10:20] + invalid[1:] + good[20:]
    await produce(bootstrap, topics.events, stream, key=lambda v: b"one-partition")
    settings = load_settings(
        database_url=database_url, kafka_bootstrap=bootstrap, topic_prefix=topics.prefix
    )

    async def done() -> bool:
        offsets = await scalar(
            sessionmaker, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
        )
        return bool(offsets == len(stream))

    await run_scoring(settings, sessionmaker, done)
    async with transient_once.connect() as conn:
        calls = (await conn.execute(text("SELECT last_value FROM fail_once_seq"))).scalar_one()
    assert calls >= 2, "the injected transient failure did not happen"
    assert await scalar(sessionmaker, "SELECT count(*) FROM processed_events") == 30
    letters = [orjson.loads(v) for v in await all_dead_letters(bootstrap, topics)]
    assert sorted(letter["original"].encode() for letter in letters) == sorted(invalid)


async def test_scoring_retries_statement_timeouts_and_dead_letters_nothing(
    caplog: pytest.LogCaptureFixture,
    sessionmaker: async_sessionmaker[AsyncSession],
    clean_db: AsyncEngine,
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
) -> None:
    """A held lock makes every scoring statement hit statement_timeout (57014) for a
    while: the batch is retried until the lock goes, nothing is dead-lettered or lost."""
    topics = created_topics
    events = [audit(f"t-{i}", f"s{i % 4}") for i in range(40)]
    await produce(bootstrap, topics.events, events, key=key_of)
    settings = load_settings(
        database_url=database_url, kafka_bootstrap=bootstrap, topic_prefix=topics.prefix
    )
    engine = create_async_engine(
        database_url,
        connect_args={"server_settings": {"statement_timeout": "300"}},
    )
    sm = create_sessionmaker(engine)
    lock_conn = await clean_db.connect()
    tx = await lock_conn.begin()
    await lock_conn.execute(text("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE"))

    async def release_later() -> None:
        await asyncio.sleep(4)  # the fault's duration, not a synchronisation
        await tx.rollback()
        await lock_conn.close()

    releaser = asyncio.create_task(release_later())

    async def done() -> bool:
        return bool(await scalar(sessionmaker, "SELECT count(*) FROM processed_events") == 40)

    try:
        consumer = await run_scoring(settings, sm, done, timeout=60)
    finally:
        await releaser
        await engine.dispose()
    assert "statement timeout" in caplog.text, "the fault did not happen"
    assert consumer.quarantine is not None and consumer.quarantine.count == 0
    assert await scalar(sessionmaker, "SELECT count(*) FROM platform_incidents") == 0


async def test_notify_dead_letters_malformed_scores_and_evaluates_the_rest(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
) -> None:
    topics = created_topics
    now = utcnow()
    good = [orjson.dumps(snapshot(f"n{i}", now)) for i in range(5)]
    bad = [b"not json", orjson.dumps({"specialist_id": "x"}), b'{"kpis": []}']
    await produce(bootstrap, topics.scores, good[:2] + bad + good[2:], key=lambda v: b"k")
    settings = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        topic_prefix=topics.prefix,
        notify_session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    consumer = ScoresConsumer(
        settings, sessionmaker, NotifyConfig.from_settings(settings), utcnow, lambda _: None
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())

    async def evaluated() -> bool:
        n = await scalar(sessionmaker, "SELECT count(DISTINCT specialist_id) FROM alert_states")
        return bool(n == 5)

    try:
        await wait_for(evaluated, timeout=60)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)
    letters = await dead_letters(bootstrap, topics, 3)
    assert sorted(letter["original"].encode() for letter in letters) == sorted(bad)
    assert {letter["source"]["topic"] for letter in letters} == {"kpi.scores"}
    assert {letter["code"] for letter in letters} == {"unprocessable"}
