"""Kafka infrastructure: producer/consumer factories, topic setup, broker ping, batch loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from shared import topics
from shared.metrics import ASSIGNED_PARTITIONS

logger = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
BatchHandler = Callable[[list[Record]], Awaitable[None]]


def create_producer(bootstrap: str, *, client_id: str, **overrides: Any) -> AIOKafkaProducer:
    """Producer tuned for batching; acks=all, no idempotence (the embedded broker lacks it)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "request_timeout_ms": 15000,
        "retry_backoff_ms": 200,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def create_consumer(
    bootstrap: str,
    *,
    group_id: str,
    client_id: str,
    topics_: Sequence[str] = (),
    **overrides: Any,
) -> AIOKafkaConsumer:
    """Consumer with manual commits: offsets only move after the batch's effects are durable."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_uncommitted",
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 2000,
        "max_poll_interval_ms": 300000,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics_, **options)


async def ensure_topics(
    bootstrap: str, partitions: int, names: Iterable[str] = topics.ALL_TOPICS
) -> list[str]:
    """Create missing topics; returns the names that were created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="kpi-admin")
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n not in existing]
        if wanted:
            new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted]
            try:
                await admin.create_topics(new)
                created = wanted
            except TopicAlreadyExistsError:
                created = []
    finally:
        await admin.close()
    return created


async def broker_ping(bootstrap: str, timeout: float = 3.0) -> None:
    """Fetch cluster metadata on a fresh connection; raises when the broker cannot answer."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="kpi-readyz")
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    except TimeoutError:
        raise KafkaError(f"broker did not answer within {timeout:.0f}s") from None
    finally:
        await client.close()


class BatchLoop:
    """Consume batches, hand them to a handler, then commit; a failed batch is retried.

    The handler's effects must be durable before it returns (database commit, broker ack),
    because only then are the offsets committed. Handlers are idempotent, so a crash
    between the two steps only causes a harmless redelivery.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        handler: BatchHandler,
        *,
        name: str,
        max_records: int = 2000,
        poll_timeout_ms: int = 500,
        commit: Callable[[dict[TopicPartition, int]], Awaitable[None]] | None = None,
        max_backoff: float = 10.0,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._name = name
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._commit = commit or self._kafka_commit
        self._max_backoff = max_backoff
        self._stopping = asyncio.Event()
        self.healthy = True
        self.last_error: str | None = None
        self.batches = 0

    def stop(self) -> None:
        self._stopping.set()

    async def _kafka_commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced under us; the new owner re-reads from the last commit
            # and idempotent handlers make that redelivery harmless.
            logger.warning("%s: commit skipped after rebalance: %s", self._name, exc)

    async def run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                )
            except KafkaError as exc:
                attempt += 1
                await self._backoff(attempt, f"fetch failed: {exc!r}")
                continue
            records = [rec for recs in batches.values() for rec in recs]
            if not records:
                attempt = 0
                continue
            try:
                await self._handler(records)
                await self._commit({tp: recs[-1].offset + 1 for tp, recs in batches.items()})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                # Rewind so the same records come back: nothing is skipped on failure.
                for tp, recs in batches.items():
                    if tp in self._consumer.assignment():
                        self._consumer.seek(tp, recs[0].offset)
                logger.exception("%s: batch of %d failed, will retry", self._name, len(records))
                await self._backoff(attempt, f"batch failed: {exc!r}")
                continue
            attempt = 0
            self.batches += 1
            self.healthy, self.last_error = True, None

    async def _backoff(self, attempt: int, reason: str) -> None:
        self.healthy, self.last_error = False, reason
        delay = min(self._max_backoff, 0.2 * 2 ** min(attempt, 10)) * (0.5 + random.random() / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)


class LoggingRebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs partition moves; services subclass it when they keep offsets elsewhere."""

    def __init__(self, name: str) -> None:
        self._name = name

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        logger.info("%s: partitions revoked: %s", self._name, sorted(map(str, revoked)))
        ASSIGNED_PARTITIONS.labels(self._name).set(0)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # aiokafka rebalances eagerly: ``assigned`` is the member's whole new assignment.
        logger.info("%s: partitions assigned: %s", self._name, sorted(map(str, assigned)))
        ASSIGNED_PARTITIONS.labels(self._name).set(len(assigned))
