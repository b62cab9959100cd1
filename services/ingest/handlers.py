"""Ingest use-cases: a Kafka batch, an HTTP submission and the dead-letter replay."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest import repository
from services.ingest.intake import (
    OUTCOME_DEADLETTERED,
    OUTCOME_PUBLISHED,
    Outgoing,
    classify,
    classify_item,
    replay_outgoing,
    stats_delta,
)
from shared.db import session_scope, utcnow
from shared.deadletter import Source
from shared.events import loads_with_surrogates
from shared.kafka import Record
from shared.text import scrub
from shared.topics import Topics

logger = logging.getLogger(__name__)

MESSAGES = Counter(
    "kpi_ingest_messages_total",
    "Messages taken in by ingest, by source topic (or http/replay) and outcome",
    ["topic", "outcome"],
)
DEADLETTERS = Counter(
    "kpi_ingest_deadletter_total",
    "Messages sent to the dead-letter topic, by source topic and reason code",
    ["topic", "code"],
)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time; nothing was accepted."""


@dataclass
class BrokerHealth:
    """Last publish failure, shared by the consumer loop, HTTP intake and /readyz."""

    last_error: str | None = None
    failed_at: float | None = None

    def failed(self, reason: str) -> None:
        self.last_error, self.failed_at = reason, time.monotonic()

    def ok(self) -> None:
        self.last_error, self.failed_at = None, None

    def recently_failed(self, window: float = 30.0) -> bool:
        return self.failed_at is not None and time.monotonic() - self.failed_at < window


_PARTITIONER = DefaultPartitioner()


async def publish(producer: AIOKafkaProducer, topics: Topics, outgoing: Sequence[Outgoing]) -> None:
    """Send everything, then wait for every acknowledgement (raises if any failed).

    Messages are packed into one record batch per partition (``create_batch``), which
    costs a fraction of a ``send`` per message; keyed messages land on the partition the
    default (Java-compatible murmur2) partitioner picks, exactly as ``send`` would.
    """
    futures: list[asyncio.Future[Any]] = []
    partitions: dict[str, list[int]] = {}
    by_key: dict[tuple[str, bytes], int] = {}
    open_batches: dict[tuple[str, int], BatchBuilder] = {}
    spread = 0
    for item in outgoing:
        topic = topics.deadletter if item.deadletter else topics.events
        parts = partitions.get(topic)
        if parts is None:
            parts = partitions[topic] = sorted(await producer.partitions_for(topic))
        if item.key is None:
            partition = parts[spread % len(parts)]
            spread += 1
        else:
            cached = by_key.get((topic, item.key))
            if cached is None:
                cached = by_key[(topic, item.key)] = _PARTITIONER(item.key, parts, parts)
            partition = cached
        batch = open_batches.get((topic, partition))
        if batch is None:
            batch = open_batches[(topic, partition)] = producer.create_batch()
        if batch.append(key=item.key, value=item.value, timestamp=None) is not None:
            continue
        # Batch full: ship it and start another; a message too big for an empty batch
        # goes alone through send(), which allows up to max_request_size.
        futures.append(await producer.send_batch(batch, topic, partition=partition))
        batch = open_batches[(topic, partition)] = producer.create_batch()
        if batch.append(key=item.key, value=item.value, timestamp=None) is None:
            futures.append(
                await producer.send(topic, item.value, key=item.key, partition=partition)
            )
    for (topic, partition), batch in open_batches.items():
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    if futures:
        await asyncio.gather(*futures)


def count_metrics(outgoing: Sequence[Outgoing]) -> None:
    for (topic, outcome, code), n in stats_delta(outgoing).items():
        MESSAGES.labels(topic, outcome).inc(n)
        if outcome == OUTCOME_DEADLETTERED:
            DEADLETTERS.labels(topic, code).inc(n)


class KafkaIntake:
    """Handler of one consumed batch: classify, publish all, await acks, record stats.

    Returning normally is what lets the BatchLoop commit offsets, so every failure
    (broker or database) raises and the batch is re-read: at-least-once.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics: Topics,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        health: BrokerHealth,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._sessionmaker = sessionmaker
        self._health = health

    async def __call__(self, records: list[Record]) -> None:
        at = utcnow()
        outgoing = [
            classify(rec.value, rec.key, Source("kafka", rec.topic, rec.partition, rec.offset), at)
            for rec in records
        ]
        try:
            await publish(self._producer, self._topics, outgoing)
        except Exception as exc:
            self._health.failed(f"publish failed: {type(exc).__name__}: {exc}")
            raise
        self._health.ok()
        if self._sessionmaker is not None:
            async with session_scope(self._sessionmaker) as session:
                await repository.add_stats(session, stats_delta(outgoing))
        count_metrics(outgoing)


# ------------------------------------------------------------------------- HTTP


@dataclass
class HttpResult:
    """Per-event results of one POST; ``status`` is the HTTP status to answer."""

    status: int
    results: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0

    def body(self) -> dict[str, Any]:
        return {"results": self.results, "accepted": self.accepted, "rejected": self.rejected}


def _event_id_of(item: object) -> str | None:
    if isinstance(item, dict):
        value = item.get("event_id")
        if isinstance(value, str):
            # Echoed in the JSON answer, which cannot carry an unpaired surrogate.
            return scrub(value.strip()[:128])
    return None


class HttpIntake:
    """Validate posted events and publish them to kpi.events (rejections to the dead letter)."""

    def __init__(
        self,
        topics: Topics,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        health: BrokerHealth,
        *,
        publish_timeout: float,
        producer: Callable[[], AIOKafkaProducer | None],
        ping: Callable[[], Awaitable[None]],
    ) -> None:
        self._topics = topics
        self._sessionmaker = sessionmaker
        self._health = health
        self._timeout = publish_timeout
        self._producer = producer
        self._ping = ping

    async def _store(self, outgoing: list[Outgoing]) -> None:
        producer = self._producer()
        if producer is None:
            raise BrokerUnavailable(self._health.last_error or "broker connection not started yet")
        if self._health.recently_failed():
            # Fail fast instead of making every caller wait for the publish timeout.
            try:
                await asyncio.wait_for(self._ping(), 2.0)
            except Exception as exc:
                raise BrokerUnavailable(f"broker unreachable: {type(exc).__name__}") from None
        try:
            await asyncio.wait_for(publish(producer, self._topics, outgoing), self._timeout)
        except Exception as exc:
            reason = f"publish failed: {type(exc).__name__}: {exc}"
            self._health.failed(reason)
            raise BrokerUnavailable(reason) from None
        self._health.ok()
        if self._sessionmaker is not None:
            try:
                async with session_scope(self._sessionmaker) as session:
                    await repository.add_stats(session, stats_delta(outgoing))
            except Exception:
                # The events are already durable on the broker: answering 503 now would
                # only make the caller re-send them. Stats under-count instead (logged).
                logger.exception("ingest stats not recorded for %d http events", len(outgoing))
        count_metrics(outgoing)

    async def reject_body(self, body: bytes, reason: str) -> None:
        """Dead-letter a body that is not JSON at all (the caller gets 400)."""
        from shared.events import NOT_JSON, InvalidEvent

        item = classify(body, None, Source("http"), utcnow())
        if not item.deadletter:  # pragma: no cover - callers only pass unparsable bodies
            item = Outgoing(
                deadletter=True,
                key=None,
                value=item.value,
                stats_topic="http",
                code=NOT_JSON,
                errors=InvalidEvent.single(NOT_JSON, reason).errors,
            )
        await self._store([item])

    async def submit(self, items: list[object]) -> HttpResult:
        at = utcnow()
        outgoing: list[Outgoing] = []
        results: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            out = classify_item(item, Source("http"), at)
            outgoing.append(out)
            if out.deadletter:
                results.append(
                    {
                        "index": index,
                        "event_id": _event_id_of(item),
                        "status": "rejected",
                        "errors": [
                            {"field": e.field, "reason": e.reason, "code": e.code}
                            for e in out.errors
                        ],
                    }
                )
            else:
                results.append(
                    {"index": index, "event_id": out.event_id, "status": "accepted", "errors": []}
                )
        await self._store(outgoing)
        accepted = sum(1 for o in outgoing if not o.deadletter)
        rejected = len(outgoing) - accepted
        status = 422 if rejected and not accepted else 202
        return HttpResult(status, results, accepted, rejected)


# ----------------------------------------------------------------------- replay


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
    from shared.kafka import create_producer

    summary = ReplaySummary()
    # No group: the replay reads by explicit assignment and commits nothing.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=f"kpi-replay-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = None if dry_run else create_producer(bootstrap, client_id="kpi-replay")
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


__all__ = [
    "DEADLETTERS",
    "MESSAGES",
    "OUTCOME_PUBLISHED",
    "BrokerHealth",
    "BrokerUnavailable",
    "HttpIntake",
    "HttpResult",
    "KafkaIntake",
    "ReplaySummary",
    "publish",
    "replay_deadletter",
]
