"""Publishing to kpi.events and the dead-letter topic in record batches, plus intake metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import Counter

from services.ingest.intake import OUTCOME_DEADLETTERED, Outgoing, stats_delta
from shared.topics import Topics

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
