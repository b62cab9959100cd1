"""Kafka infrastructure: producer/consumer factories, topic setup, broker ping, batch loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from shared import health, topics
from shared.db import utcnow
from shared.deadletter import Source, unprocessable_value
from shared.health import HealthReporter

# Re-exported: shared.kafka stays the import for every producer and consumer.
from shared.kafka_clients import create_admin, create_client
from shared.kafka_clients import create_consumer as create_consumer
from shared.kafka_clients import create_producer as create_producer
from shared.kafka_settings import KafkaSecurity
from shared.logwatch import AnchorCheck, LogReset, LogWatch
from shared.metrics import ASSIGNED_PARTITIONS, POISON_RECORDS
from shared.offsets import Changed, LogCheck
from shared.poison import isolate
from shared.watchdog import StallWatch

logger = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
BatchHandler = Callable[[list[Record]], Awaitable[None]]


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    names: Iterable[str] = topics.ALL_TOPICS,
    *,
    replication_factor: int | None = None,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create missing topics; returns the names that were created.

    ``replication_factor`` None means the broker's ``default.replication.factor`` (read
    with DescribeConfigs; 1, Kafka's own default, when the broker does not say).
    """
    admin = create_admin(bootstrap, client_id="kpi-admin", security=security)
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n not in existing]
        if wanted:
            factor = replication_factor or await _default_replication_factor(admin)
            new = [
                NewTopic(n, num_partitions=partitions, replication_factor=factor) for n in wanted
            ]
            try:
                await admin.create_topics(new)
                created = wanted
            except TopicAlreadyExistsError:
                created = []
    finally:
        await admin.close()
    return created


async def _default_replication_factor(admin: AIOKafkaAdminClient) -> int:
    # CreateTopics v4+ would take -1 for "the broker's default"; aiokafka speaks v3, so ask
    # a broker for the value instead.
    try:
        brokers = admin._client.cluster.brokers()
        node = min(b.nodeId for b in brokers)
        answers = await admin.describe_configs(
            [
                ConfigResource(
                    ConfigResourceType.BROKER, str(node), {"default.replication.factor": None}
                )
            ]
        )
        for answer in answers:
            for resource in answer.resources:
                for entry in resource[4]:
                    if entry[0] == "default.replication.factor" and entry[1]:
                        return max(1, int(entry[1]))
    except (KafkaError, ValueError, IndexError, TypeError) as exc:
        logger.info("broker default replication factor unknown (%s); using 1", exc)
    return 1


async def broker_ping(
    bootstrap: str, timeout: float = 3.0, *, security: KafkaSecurity | None = None
) -> None:
    """Fetch cluster metadata on a fresh connection; raises when the broker cannot answer."""
    client = create_client(bootstrap, client_id="kpi-readyz", security=security)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    except TimeoutError:
        raise KafkaError(f"broker did not answer within {timeout:.0f}s") from None
    finally:
        await client.close()


class Quarantine:
    """Dead-letters records whose processing failed deterministically (poison), loudly.

    The dead letter (original bytes, reason, exception class, source topic, partition and
    offset) is acknowledged by the broker before the caller moves its offset past the
    record, so a poison record is never lost; a metric counts it and a platform-health
    incident tells admins (one open incident per service and topic, recurrences counted).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics_: topics.Topics,
        *,
        service: str,
        reporter: HealthReporter | None = None,
    ) -> None:
        self._producer = producer
        self._topics = topics_
        self.service = service
        self.reporter = reporter
        self.count = 0

    async def send(self, record: Record, exc: BaseException) -> None:
        topic = self._topics.base_of(record.topic)
        source = Source("kafka", topic, record.partition, record.offset)
        value = unprocessable_value(
            record.value or b"", exc, source, utcnow(), service=self.service
        )
        await self._producer.send_and_wait(self._topics.deadletter, value, key=record.key)
        self.count += 1
        POISON_RECORDS.labels(self.service, topic).inc()
        logger.error(
            "%s: dead-lettered the record at %s[%d]@%d: processing it failed every time "
            "(%s: %s); the rest of the partition goes on",
            self.service,
            topic,
            record.partition,
            record.offset,
            type(exc).__name__,
            str(exc)[:300],
        )
        if self.reporter is not None:
            where = f"{topic}[{record.partition}]@{record.offset}"
            await self.reporter.open(
                f"poison:{self.service}:{topic}",
                health.POISON,
                f"{self.service} dead-lettered a record it could not process "
                f"({where}: {type(exc).__name__}); see kpi.deadletter",
                {
                    "topic": topic,
                    "last": {
                        "partition": record.partition,
                        "offset": record.offset,
                        "exception": type(exc).__name__,
                        "reason": str(exc)[:300],
                    },
                },
            )


def unapplied_lag(
    consumer: AIOKafkaConsumer,
    check: LogCheck,
    fetched: Mapping[TopicPartition, Sequence[Record]],
) -> tuple[int | None, int | None]:
    """(records not applied yet, timestamp of the oldest fetched one) over the assignment.

    From the high-water marks of fetch responses (``end_offsets`` is wrong on the embedded
    broker) and the next offset this consumer expects; unknown partitions are left out.
    """
    lag: int | None = None
    oldest: int | None = None
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        recs = fetched.get(tp)
        next_offset = recs[0].offset if recs else check.expected((tp.topic, tp.partition))
        if highwater is None or next_offset is None:
            continue
        lag = (lag or 0) + max(0, highwater - next_offset)
        if recs:
            ts = recs[0].timestamp
            oldest = ts if oldest is None else min(oldest, ts)
    return lag, oldest


class BatchLoop:
    """Consume batches, hand them to a handler, then commit; a failed batch is retried.

    The handler's effects must be durable before it returns (database commit, broker ack),
    because only then are the offsets committed. Handlers are idempotent, so a crash
    between the two steps only causes a harmless redelivery.

    With a ``quarantine``, a batch that fails for a reason other than the database, the
    broker or the network is bisected and the records that fail on their own are
    dead-lettered (``shared.poison``). A ``watch`` is told about lag and progress (stall
    watchdog). Every partition's log is checked against the position held: when the
    broker's log was reset (memory broker restarted, topic re-created) the partition is
    re-read from its log start, loudly (idempotent handlers make re-reading harmless).
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
        quarantine: Quarantine | None = None,
        watch: StallWatch | None = None,
        reporter: HealthReporter | None = None,
        group_id: str = "",
        bootstrap: str | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._name = name
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._commit = commit or self._kafka_commit
        self._max_backoff = max_backoff
        self._quarantine = quarantine
        self._watch = watch
        self._reporter = reporter
        self._group_id = group_id
        self.logs = LogWatch()
        self.check = self.logs.check
        # Without the bootstrap (tools, benchmarks) the anchor re-reads are off.
        self.anchors = (
            AnchorCheck(bootstrap, client_id=f"kpi-{name}-anchor", security=security)
            if bootstrap
            else None
        )
        self._stopping = asyncio.Event()
        self.healthy = True
        self.last_error: str | None = None
        self.batches = 0
        self.log_resets = 0

    def stop(self) -> None:
        self._stopping.set()

    def assignment_changed(self, partitions: Iterable[TopicPartition]) -> None:
        """Rebalance hook: positions of moved partitions come from Kafka, not from us."""
        for tp in partitions:
            self.check.forget((tp.topic, tp.partition))
            if self.anchors is not None:
                self.anchors.forget(tp)

    async def _kafka_commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced under us; the new owner re-reads from the last commit
            # and idempotent handlers make that redelivery harmless.
            logger.warning("%s: commit skipped after rebalance: %s", self._name, exc)

    async def _apply(self, records: Sequence[Record]) -> None:
        await self._handler(list(records))
        last: dict[TopicPartition, int] = {}
        for rec in records:
            last[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
        await self._commit(last)

    async def _poison(self, record: Record, exc: BaseException) -> None:
        assert self._quarantine is not None
        await self._quarantine.send(record, exc)
        await self._commit({TopicPartition(record.topic, record.partition): record.offset + 1})

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            if self.anchors is not None:
                await self.anchors.close()

    async def _loop(self) -> None:
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
            if self._watch is not None:
                self._watch.observed(*unapplied_lag(self._consumer, self.check, batches))
            batches = await self._checked(batches)
            records = [rec for recs in batches.values() for rec in recs]
            if not records:
                attempt = 0
                continue
            try:
                if self._quarantine is None:
                    await self._apply(records)
                else:
                    await isolate(records, self._apply, self._poison)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                # Rewind so the same records come back: nothing is skipped on failure.
                for tp, recs in batches.items():
                    if tp in self._consumer.assignment():
                        self._consumer.seek(tp, recs[0].offset)
                        self.check.seeked((tp.topic, tp.partition), recs[0].offset)
                logger.exception("%s: batch of %d failed, will retry", self._name, len(records))
                if self._watch is not None:
                    self._watch.failed(f"{type(exc).__name__}: {exc}")
                await self._backoff(attempt, f"batch failed: {exc!r}")
                continue
            attempt = 0
            self.batches += 1
            self.healthy, self.last_error = True, None
            if self._watch is not None:
                self._watch.applied()
            if self.anchors is not None:
                self.anchors.applied(records)

    async def _checked(
        self, batches: dict[TopicPartition, list[Record]]
    ) -> dict[TopicPartition, list[Record]]:
        """Drop what belongs to a log that changed under us and re-read it from its start."""
        changed = await self.logs.scan(self._consumer, batches)
        if self.anchors is not None:
            changed = await self.anchors.confirm(changed)
            changed.update(await self.anchors.check(self._consumer.assignment()))
        for tp, verdict in changed.items():
            batches.pop(tp, None)
            await self._log_reset(tp, verdict)
        return batches

    async def _log_reset(self, tp: TopicPartition, verdict: Changed) -> None:
        if tp not in self._consumer.assignment():
            return
        try:
            start = (await self._consumer.beginning_offsets([tp])).get(tp, 0)
        except KafkaError as exc:
            # Offset 0 is below any log start: the client's "earliest" policy moves it to
            # the real one, so the partition is re-read from its start all the same.
            logger.warning("%s: log start of %s unknown (%s); seeking to 0", self._name, tp, exc)
            start = 0
        self._consumer.seek(tp, start)
        self.check.seeked((tp.topic, tp.partition), start)
        if self.anchors is not None:
            self.anchors.forget(tp)
        self.log_resets += 1
        reset = LogReset(self._name, self._group_id, tp.topic, tp.partition, verdict, start)
        reset.log()
        if self._reporter is not None:
            incident = reset.incident()
            await self._reporter.open(
                incident["key"], incident["kind"], incident["summary"], incident["detail"]
            )

    async def _backoff(self, attempt: int, reason: str) -> None:
        self.healthy, self.last_error = False, reason
        delay = min(self._max_backoff, 0.2 * 2 ** min(attempt, 10)) * (0.5 + random.random() / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)


class LoggingRebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs partition moves; services subclass it when they keep offsets elsewhere."""

    def __init__(
        self, name: str, on_revoked: Callable[[list[TopicPartition]], None] | None = None
    ) -> None:
        self._name = name
        # Set by whoever tracks positions per partition (BatchLoop.assignment_changed).
        self.on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        logger.info("%s: partitions revoked: %s", self._name, sorted(map(str, revoked)))
        ASSIGNED_PARTITIONS.labels(self._name).set(0)
        if self.on_revoked is not None:
            self.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # aiokafka rebalances eagerly: ``assigned`` is the member's whole new assignment.
        logger.info("%s: partitions assigned: %s", self._name, sorted(map(str, assigned)))
        ASSIGNED_PARTITIONS.labels(self._name).set(len(assigned))
