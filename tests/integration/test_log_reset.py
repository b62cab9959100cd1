"""Scoring keeps counting when the broker's log is reset or replaced under its stored offsets.

Each test runs its own embedded broker so it can restart it (the memory broker forgets every
topic, exactly as `make run` twice in a row does) while PostgreSQL keeps the offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.engine.consumer import ScoringConsumer
from shared.embedded import EmbeddedBroker
from shared.events import encode_event, partition_key, validate_event_obj
from shared.kafka import ensure_topics
from shared.logwatch import AnchorCheck
from shared.offsets import BEYOND_LOG_END, RECORD_MISMATCH, Changed
from shared.settings import load_settings
from shared.topics import Topics
from tests.kafka_helpers import SESSION_TIMEOUT_MS, produce, wait_for
from tests.service_helpers import worker_port


def audits(prefix: str, n: int) -> list[bytes]:
    """``n`` audits spread over 7 specialists (so every partition gets some)."""
    return [
        encode_event(
            validate_event_obj(
                {
                    "event_id": f"{prefix}-{i}",
                    "type": "record.audited",
                    "occurred_at": "2026-11-02T10:00:00Z",
                    "specialist_id": f"s{i % 7}",
                    "accurate": True,
                }
            )
        )
        for i in range(n)
    ]


class Broker:
    """An embedded broker that can be restarted on the same port with an empty log."""

    def __init__(self, home: Path) -> None:
        self.port = worker_port()
        self.home = home
        self.server: EmbeddedBroker | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = EmbeddedBroker(port=self.port, log_path=self.home / "broker.log")
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


class Scorer:
    """A scoring consumer running in this process, started and stopped at will."""

    def __init__(self, settings: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.group = f"reset-{uuid.uuid4().hex[:8]}"
        self.consumer: ScoringConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.resets = 0

    async def start(self) -> ScoringConsumer:
        self.consumer = ScoringConsumer(
            self.settings,
            self.sessionmaker,
            group_id=self.group,
            consumer_options={
                "session_timeout_ms": SESSION_TIMEOUT_MS,
                "heartbeat_interval_ms": 500,
            },
        )
        await self.consumer.start()
        self.task = asyncio.create_task(self.consumer.run())
        return self.consumer

    async def stop(self) -> None:
        if self.consumer is None or self.task is None:
            return
        self.resets += self.consumer.log_resets
        self.consumer.stop()
        await asyncio.wait_for(self.task, 20)
        await self.consumer.close()
        self.consumer = self.task = None


@pytest.fixture
async def scorer(
    own_broker: Broker, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Scorer]:
    topics = Topics(f"r{uuid.uuid4().hex[:8]}.")
    settings = load_settings(
        database_url=database_url,
        kafka_bootstrap=own_broker.bootstrap,
        topic_prefix=topics.prefix,
    )
    await ensure_topics(own_broker.bootstrap, 3, topics.all)
    scorer = Scorer(settings, sessionmaker)
    yield scorer
    with contextlib.suppress(Exception):
        await scorer.stop()


async def count(sm: async_sessionmaker[AsyncSession], sql: str) -> int:
    async with sm() as session:
        return int((await session.execute(text(sql))).scalar_one())


async def applied(sm: async_sessionmaker[AsyncSession]) -> int:
    return await count(sm, "SELECT count(*) FROM processed_events")


async def audits_counted(sm: async_sessionmaker[AsyncSession]) -> int:
    return await count(
        sm,
        "SELECT coalesce(sum(den), 0) FROM kpi_daily WHERE metric = 'record_accuracy'",
    )


async def send(broker: Broker, topics: Topics, values: list[bytes]) -> None:
    def key(value: bytes) -> bytes:
        return partition_key(validate_event_obj(__import__("orjson").loads(value)))

    await produce(broker.bootstrap, topics.events, values, key=key)


async def restart_broker(broker: Broker, topics: Topics) -> None:
    broker.stop()
    broker.start()
    await ensure_topics(broker.bootstrap, 3, topics.all)


async def reset_incidents(sm: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sm() as session:
        rows = await session.execute(
            text("SELECT kind, status, detail FROM platform_incidents WHERE kind = 'log_reset'")
        )
        return list(rows.all())


@pytest.mark.parametrize("new_log", ["shorter", "longer"])
async def test_restart_on_a_fresh_broker_counts_every_new_event(
    own_broker: Broker,
    scorer: Scorer,
    sessionmaker: async_sessionmaker[AsyncSession],
    new_log: str,
) -> None:
    """`make run`, Ctrl-C, `make run`: the stored offsets point into a log that is gone.

    A shorter new log shows as a position beyond the log end; a longer one only by the
    record below the stored offset being a different record (fingerprint).
    """
    topics = scorer.settings.topics
    await send(own_broker, topics, audits("old", 30))
    await scorer.start()
    await wait_for(lambda: _is(applied(sessionmaker), 30), timeout=60)
    await scorer.stop()

    await restart_broker(own_broker, topics)
    fresh = 5 if new_log == "shorter" else 60
    # Re-sent old events (a connector replaying) must not count twice.
    await send(own_broker, topics, audits("new", fresh) + audits("old", 10))
    await scorer.start()
    await wait_for(lambda: _is(applied(sessionmaker), 30 + fresh), timeout=60)
    await wait_for(lambda: _is(audits_counted(sessionmaker), 30 + fresh), timeout=30)
    await scorer.stop()
    assert scorer.resets >= 1
    incidents = await reset_incidents(sessionmaker)
    assert incidents, "a log reset must be recorded for admins"
    assert incidents[0][1] == "open"
    reasons = {p["reason"] for p in incidents[0][2]["partitions"].values()}
    assert reasons <= {"beyond_log_end", "record_mismatch"}
    if new_log == "longer":
        assert "record_mismatch" in reasons


async def test_broker_losing_its_log_while_scoring_runs(
    own_broker: Broker, scorer: Scorer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    topics = scorer.settings.topics
    await send(own_broker, topics, audits("before", 40))
    consumer = await scorer.start()
    await wait_for(lambda: _is(applied(sessionmaker), 40), timeout=60)

    await restart_broker(own_broker, topics)
    await send(own_broker, topics, audits("after", 12))
    await wait_for(lambda: _is(applied(sessionmaker), 52), timeout=90)
    assert await audits_counted(sessionmaker) == 52
    assert consumer.log_resets >= 1
    assert await reset_incidents(sessionmaker)


async def test_topic_recreated_and_refilled_while_scoring_runs(
    own_broker: Broker, scorer: Scorer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """No rebalance, no short log: the new log already passes the old positions.

    Found by the chaos campaign: only re-reading an applied record (the anchor check) shows
    that the log under the position is another one; the records below are then re-read.
    """
    topics = scorer.settings.topics
    await send(own_broker, topics, audits("before", 40))
    consumer = await scorer.start()
    await wait_for(lambda: _is(applied(sessionmaker), 40), timeout=60)

    admin = AIOKafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topics.events])
    finally:
        await admin.close()
    await ensure_topics(own_broker.bootstrap, 3, [topics.events])
    # A connector replaying its history at once: the new log passes the old positions.
    await send(own_broker, topics, audits("after", 60) + audits("before", 40))
    await wait_for(lambda: _is(applied(sessionmaker), 100), timeout=60)
    assert await audits_counted(sessionmaker) == 100
    assert consumer.log_resets >= 1
    incidents = await reset_incidents(sessionmaker)
    assert incidents, "the reset must be recorded for admins"


async def test_unchanged_log_is_verified_not_reset(
    own_broker: Broker, scorer: Scorer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A restart against the same log continues exactly where it stopped: no incident."""
    topics = scorer.settings.topics
    await send(own_broker, topics, audits("a", 20))
    await scorer.start()
    await wait_for(lambda: _is(applied(sessionmaker), 20), timeout=60)
    await scorer.stop()
    await send(own_broker, topics, audits("b", 20))
    await scorer.start()
    await wait_for(lambda: _is(applied(sessionmaker), 40), timeout=60)
    await scorer.stop()
    assert scorer.resets == 0
    assert await reset_incidents(sessionmaker) == []
    async with sessionmaker() as session:
        fps = (
            await session.execute(
                text("SELECT count(*) FROM consumer_offsets WHERE fingerprint IS NOT NULL")
            )
        ).scalar_one()
    assert fps >= 1


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_a_low_high_water_mark_is_confirmed_against_the_log(bootstrap: str) -> None:
    """A "beyond the log end" verdict stands only when the record before the position is gone.

    The client's high-water mark can be stale or wrong (the embedded broker's ListOffsets
    after a pause): trusting it alone re-read a whole partition and repeated its dead letters.
    """
    topics = Topics(f"hw{uuid.uuid4().hex[:8]}.")
    await ensure_topics(bootstrap, 1, [topics.events])
    await produce(bootstrap, topics.events, [b"%d" % i for i in range(10)])
    tp = TopicPartition(topics.events, 0)
    anchors = AnchorCheck(bootstrap)
    try:
        stale = {tp: Changed(BEYOND_LOG_END, 10, 4)}  # the record at 9 is there
        assert await anchors.confirm(stale) == {}
        cut = {tp: Changed(BEYOND_LOG_END, 50, 10)}  # nothing at 49: the log is shorter
        confirmed = await anchors.confirm(cut)
        assert list(confirmed) == [tp] and confirmed[tp].reason == BEYOND_LOG_END
        other = {tp: Changed(RECORD_MISMATCH, 5, 4)}  # other verdicts pass untouched
        assert await anchors.confirm(other) == other
    finally:
        await anchors.close()
