"""Scoring Kafka adapter: decodes kpi.events batches and applies them (offsets in PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.config import ScoringConfig
from services.scoring.engine.handlers import BatchResult, Incoming, merge, process_batch
from services.scoring.engine.positions import Partition, StoredPositions
from shared.db import session_scope, utcnow
from shared.deadletter import Source, deadletter_value
from shared.events import InvalidEvent, decode_event
from shared.health import HealthReporter
from shared.kafka import Quarantine, Record, create_consumer, create_producer, unapplied_lag
from shared.offsets import fingerprint
from shared.poison import isolate
from shared.runtime import tune_gc_for_batches
from shared.settings import Settings
from shared.topics import EVENTS
from shared.watchdog import StallWatch

logger = logging.getLogger(__name__)

GROUP_ID = "kpi-scoring"

EVENTS_TOTAL = Counter(
    "kpi_scoring_events_total",
    "kpi.events records by outcome (applied, duplicate, stale, invalid)",
    ["outcome"],
)
CONFLICTS = Counter(
    "kpi_scoring_event_conflicts_total",
    "Known event ids seen again with a different payload (first version kept)",
)
DATA_QUALITY = Counter(
    "kpi_scoring_data_quality_issues_total", "Data-quality issues detected", ["issue"]
)
BATCH_SECONDS = Histogram(
    "kpi_scoring_batch_seconds",
    "Decode + transaction time of one scoring batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _count(result: BatchResult) -> None:
    # Only called after the commit, so a rolled-back batch never inflates the counters.
    EVENTS_TOTAL.labels("applied").inc(result.applied)
    EVENTS_TOTAL.labels("duplicate").inc(result.duplicates)
    EVENTS_TOTAL.labels("stale").inc(result.stale)
    EVENTS_TOTAL.labels("invalid").inc(result.invalid)
    CONFLICTS.inc(result.conflicts)
    for issue, n in result.issues_by_kind.items():
        DATA_QUALITY.labels(issue).inc(n)


def _split_by_partition(records: list[Record], groups: int) -> list[list[Record]]:
    """Whole partitions into at most ``groups`` lists of similar size (largest first)."""
    by_tp: dict[Partition, list[Record]] = {}
    for rec in records:
        by_tp.setdefault((rec.topic, rec.partition), []).append(rec)
    out: list[list[Record]] = [[] for _ in range(min(groups, len(by_tp)))]
    for tp in sorted(by_tp, key=lambda k: (-len(by_tp[k]), k)):
        min(out, key=len).extend(by_tp[tp])
    return [g for g in out if g]


class ScoringConsumer:
    """Consume kpi.events in batches; one PostgreSQL transaction per batch (offsets inside).

    Positions come from PostgreSQL and are checked against the log (``StoredPositions``).
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        group_id: str = GROUP_ID,
        max_records: int = 4000,
        consumer_options: Mapping[str, Any] | None = None,
        on_batch: Callable[[BatchResult, float], None] | None = None,
        parallel: int = 2,
        config: ScoringConfig | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.parallel = parallel
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.group_id = group_id
        self.max_records = max_records
        self.measure = (config or ScoringConfig.from_settings(settings)).measure
        self.topic = settings.topics.events
        self._options = dict(consumer_options or {})
        self._on_batch = on_batch
        self._stopping = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.healthy = True
        self.last_error: str | None = None
        self.batches = 0
        # Specialists known to exist in the directory (inserted or found by a committed
        # batch): re-inserting ~1000 of them per batch was pure waste. Nothing deletes
        # specialists, so a known id stays known for the life of the process.
        self._known_specialists: set[str] = set()
        self.reporter = HealthReporter("scoring", sessionmaker)
        self.positions = StoredPositions(settings, sessionmaker, group_id, self.reporter)
        self.watch = StallWatch("scoring", group_id, self.reporter, settings.stall_seconds)
        self.quarantine: Quarantine | None = None

    @property
    def log_resets(self) -> int:
        return self.positions.log_resets

    async def start(self) -> None:
        tune_gc_for_batches()
        bootstrap = self.settings.bootstrap_servers
        security = self.settings.kafka_security
        self.producer = create_producer(bootstrap, client_id="kpi-scoring-dlq", security=security)
        await self.producer.start()
        self.quarantine = Quarantine(
            self.producer, self.settings.topics, service="scoring", reporter=self.reporter
        )
        # Positions come from PostgreSQL (the listener seeks). When Kafka refuses one
        # (OffsetOutOfRange) the client restarts at the log start: records then arrive
        # below the position we expect, which LogCheck reports as a log change, and a
        # log start above the stored offset is the retention gap of after_gaps.
        self.consumer = create_consumer(
            bootstrap,
            group_id=self.group_id,
            client_id="kpi-scoring",
            security=security,
            **self._options,
        )
        self.positions.consumer = self.consumer
        self.consumer.subscribe([self.topic], listener=self.positions.listener())
        await self.consumer.start()

    def stop(self) -> None:
        self._stopping.set()
        self.watch.stop()

    async def close(self) -> None:
        await self.positions.close()
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def run(self) -> None:
        assert self.consumer is not None
        attempt = 0
        while not self._stopping.is_set():
            try:
                await self.positions.settle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                logger.exception("scoring: cannot position or rewind partitions yet")
                await self._backoff(attempt, f"positioning failed: {exc!r}")
                continue
            try:
                fetched = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
            except KafkaError as exc:
                attempt += 1
                await self._backoff(attempt, f"fetch failed: {exc!r}")
                continue
            self.watch.observed(*unapplied_lag(self.consumer, self.positions.logs.check, fetched))
            await self.positions.hold_changed(fetched)
            records = [r for recs in fetched.values() for r in recs]
            if not records:
                continue
            try:
                await isolate(records, self.handle, self._poison)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                logger.exception("scoring: batch of %d failed, will retry", len(records))
                for tp, recs in fetched.items():
                    if tp in self.consumer.assignment():
                        self.positions.seek(tp, recs[0].offset)
                self.watch.failed(f"{type(exc).__name__}: {exc}")
                await self._backoff(attempt, f"batch failed: {exc!r}")
                continue
            attempt = 0
            self.healthy, self.last_error = True, None
            self.watch.applied()
            self.positions.anchors.applied(records)

    async def _poison(self, record: Record, exc: BaseException) -> None:
        """Dead-letter one record that fails on its own, moving the offset past it.

        The dead letter is sent inside the transaction that moves the offset, under its
        row lock, and only if that offset was not moved already: a re-read never sends
        it twice, whichever process re-reads.
        """
        assert self.quarantine is not None
        skip = Incoming(
            None, record.topic, record.partition, record.offset, fingerprint=fingerprint(record)
        )
        async with session_scope(self.sessionmaker) as session:
            result = await process_batch(
                session, [skip], measure=self.measure, group_id=self.group_id
            )
            if result.passed_invalid:
                await self.quarantine.send(record, exc)

    async def handle(self, records: Sequence[Record]) -> BatchResult:
        """Decode, dead-letter the invalid, apply in one transaction, then advise Kafka.

        The records are split by partition into up to ``parallel`` groups, each applied in
        its own transaction on its own connection (offsets are per partition, so each group
        commits its partitions' offsets with its effects). While one group waits on
        PostgreSQL the other runs its Python part: on 2 cores this overlaps the two.
        """
        records = list(records)
        started = time.perf_counter()
        accept = frozenset(self.positions.accepted_gaps)
        groups = _split_by_partition(records, self.parallel)
        outcomes = await asyncio.gather(
            *(self._apply_group(g, accept) for g in groups), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # Groups that committed are fenced as stale when the batch is re-read.
                raise outcome
        result = merge([o for o in outcomes if isinstance(o, BatchResult)])
        # Only after the commit: a rolled-back insert must be retried by a later batch.
        self._known_specialists.update(result.new_specialists)
        _count(result)
        elapsed = time.perf_counter() - started
        BATCH_SECONDS.observe(elapsed)
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(result, elapsed)
        await self.positions.after_gaps(result, records)
        await self._advise_kafka(records, result)
        return result

    async def _apply_group(
        self, records: list[Record], accept: frozenset[Partition]
    ) -> BatchResult:
        items: list[Incoming] = []
        dead: list[tuple[Record, InvalidEvent]] = []
        last: dict[Partition, int] = {}
        for rec in records:
            last[(rec.topic, rec.partition)] = len(items)
            raw = rec.value or b""
            try:
                event = decode_event(raw)
            except InvalidEvent as exc:
                dead.append((rec, exc))
                items.append(Incoming(None, rec.topic, rec.partition, rec.offset))
                continue
            items.append(Incoming(event, rec.topic, rec.partition, rec.offset))
        for index in last.values():
            items[index] = replace(items[index], fingerprint=fingerprint(records[index]))
        async with session_scope(self.sessionmaker) as session:
            result = await process_batch(
                session,
                items,
                measure=self.measure,
                group_id=self.group_id,
                accept_gaps=accept,
                known_specialists=self._known_specialists,
            )
            # Decided with the offset commit (row locked, fenced re-reads excluded) and
            # acked before it: never lost, never sent again by a retry or a re-read.
            passed = set(result.passed_invalid)
            due = [d for d in dead if (d[0].topic, d[0].partition, d[0].offset) in passed]
            if due:
                await self._deadletter(due)
            return result

    async def _advise_kafka(self, records: list[Record], result: BatchResult) -> None:
        # The database holds the truth; this only keeps Kafka's lag figures meaningful.
        assert self.consumer is not None
        last: dict[TopicPartition, int] = {}
        for rec in records:
            if (rec.topic, rec.partition) in result.gaps:
                continue
            tp = TopicPartition(rec.topic, rec.partition)
            last[tp] = max(last.get(tp, 0), rec.offset + 1)
        owned = {tp: o for tp, o in last.items() if tp in self.consumer.assignment()}
        if not owned:
            return
        try:
            await self.consumer.commit(owned)
        except (KafkaError, AssertionError) as exc:
            logger.info("scoring: advisory offset commit skipped: %s", exc)

    async def _deadletter(self, dead: list[tuple[Record, InvalidEvent]]) -> None:
        assert self.producer is not None
        now = utcnow()
        futures = []
        for rec, exc in dead:
            source = Source("kafka", EVENTS, rec.partition, rec.offset)
            value = deadletter_value(rec.value or b"", exc, source, now)
            futures.append(
                await self.producer.send(self.settings.topics.deadletter, value, key=rec.key)
            )
        # Acked before the offsets move in the database: a dead letter is never lost.
        await asyncio.gather(*futures)
        logger.warning("scoring: dead-lettered %d invalid records", len(dead))

    async def _backoff(self, attempt: int, reason: str) -> None:
        self.healthy, self.last_error = False, reason
        delay = min(10.0, 0.2 * 2 ** min(attempt, 10)) * (0.5 + random.random() / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
