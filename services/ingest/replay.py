"""Dead-letter replay: re-submit dead letters (optionally of one reason) through intake again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.ingest.intake import Outgoing, replay_outgoing
from services.ingest.publisher import count_metrics, publish
from shared.db import utcnow
from shared.events import loads_with_surrogates
from shared.kafka import Record, create_consumer, create_producer
from shared.kafka_settings import KafkaSecurity
from shared.topics import Topics


@dataclass
class ReplaySummary:
    scanned: int = 0
    matched: int = 0
    republished: int = 0
    deadlettered: int = 0
    unreadable: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


Progress = Callable[[int, int | None], None]


async def _deadletter_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    deadline = time.monotonic() + 10
    while True:
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} does not exist")
        await asyncio.sleep(0.2)


async def replay_deadletter(
    bootstrap: str,
    topics: Topics,
    *,
    security: KafkaSecurity | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    idle_seconds: float = 3.0,
    batch_size: int = 1000,
) -> ReplaySummary:
    """Re-submit dead letters from the beginning of the topic up to where it ended at start.

    Each partition stops at the first high-water mark seen (not ``end_offsets``, which the
    embedded broker reports wrongly), so letters this run writes back are not re-read.
    """
    summary = ReplaySummary()
    # No group: the replay reads by explicit assignment and commits nothing.
    consumer = create_consumer(
        bootstrap, group_id=None, client_id=f"kpi-replay-{uuid.uuid4().hex[:6]}", security=security
    )
    producer = (
        None if dry_run else create_producer(bootstrap, client_id="kpi-replay", security=security)
    )
    await consumer.start()
    try:
        if producer is not None:
            await producer.start()
        parts = await _deadletter_partitions(consumer, topics.deadletter)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        stop: dict[TopicPartition, int] = {}
        position: dict[TopicPartition, int] = dict.fromkeys(parts, 0)
        idle_since = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=300, max_records=batch_size)
            for tp in parts:
                hw = consumer.highwater(tp)
                if tp not in stop and hw is not None:
                    stop[tp] = hw
            outgoing: list[Outgoing] = []
            at = utcnow()
            for tp, recs in batches.items():
                for rec in recs:
                    if tp in stop and rec.offset >= stop[tp]:
                        continue
                    position[tp] = rec.offset + 1
                    summary.scanned += 1
                    out = _replay_one(rec, reason, at, summary)
                    if out is not None:
                        outgoing.append(out)
            if batches:
                idle_since = time.monotonic()
            if outgoing and producer is not None:
                await publish(producer, topics, outgoing)
                count_metrics(outgoing)
            for out in outgoing:
                if out.deadletter:
                    summary.deadlettered += 1
                    code = out.code or ""
                    summary.by_code[code] = summary.by_code.get(code, 0) + 1
                else:
                    summary.republished += 1
            if progress is not None:
                total = sum(stop.values()) if len(stop) == len(parts) else None
                progress(summary.scanned, total)
            finished = len(stop) == len(parts) and all(position[tp] >= stop[tp] for tp in parts)
            if finished or time.monotonic() - idle_since > idle_seconds:
                break
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    return summary


def _replay_one(
    rec: Record, reason: str | None, at: Any, summary: ReplaySummary
) -> Outgoing | None:
    try:
        letter = orjson.loads(rec.value or b"")
    except orjson.JSONDecodeError:
        # A letter whose original holds an unpaired surrogate is re-dead-lettered, named.
        try:
            letter = loads_with_surrogates(rec.value or b"")
        except ValueError:
            summary.unreadable += 1
            return None
    if not isinstance(letter, dict):
        summary.unreadable += 1
        return None
    if reason is not None and letter.get("code") != reason:
        return None
    summary.matched += 1
    try:
        return replay_outgoing(letter, rec.key, at)
    except ValueError:
        summary.unreadable += 1
        return None
