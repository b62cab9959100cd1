"""Thin Kafka adapter: decode `kpi.scores` messages and hand each batch to the handler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.config import NotifyConfig
from services.notify.handlers.evaluate import handle_snapshots
from services.notify.handlers.transitions import Clock, Outcome
from shared.db import session_scope
from shared.health import HealthReporter
from shared.kafka import (
    BatchLoop,
    LoggingRebalanceListener,
    Quarantine,
    Record,
    create_consumer,
    create_producer,
)
from shared.scores import ScoreSnapshot
from shared.settings import Settings
from shared.watchdog import StallWatch

logger = logging.getLogger(__name__)

GROUP = "kpi-notify"

SNAPSHOTS = Counter(
    "kpi_notify_snapshots_total", "kpi.scores messages consumed by outcome", ["outcome"]
)


def group_id(settings: Settings) -> str:
    # The prefix isolates installations (and tests) sharing one cluster, like topic names.
    return f"{settings.topic_prefix}{GROUP}"


def decode(record: Record) -> ScoreSnapshot:
    """Parsed message; raises ValueError (pydantic's ValidationError is one) when malformed."""
    if record.value is None:
        raise ValueError("empty message (tombstone)")
    return ScoreSnapshot.model_validate_json(record.value)


class ScoresConsumer:
    """Consumes kpi.scores; each batch is one database transaction, then the Kafka commit.

    A malformed message, or one whose evaluation fails deterministically, is dead-lettered
    (never skipped in silence); a stall watchdog reports lag without progress.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        cfg: NotifyConfig,
        clock: Clock,
        on_committed: Callable[[Outcome], None],
    ) -> None:
        self._settings = settings
        self._sm = sessionmaker
        self._cfg = cfg
        self._clock = clock
        self._on_committed = on_committed
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.reporter = HealthReporter("notify", sessionmaker)
        self.watch = StallWatch("notify", group_id(settings), self.reporter, settings.stall_seconds)
        self.quarantine: Quarantine | None = None
        self.loop: BatchLoop | None = None

    async def start(self) -> None:
        self._producer = create_producer(
            self._settings.bootstrap_servers,
            client_id="kpi-notify-dlq",
            security=self._settings.kafka_security,
        )
        await self._producer.start()
        self.quarantine = Quarantine(
            self._producer, self._settings.topics, service="notify", reporter=self.reporter
        )
        self._consumer = create_consumer(
            self._settings.bootstrap_servers,
            group_id=group_id(self._settings),
            client_id="kpi-notify",
            security=self._settings.kafka_security,
            session_timeout_ms=self._settings.notify_session_timeout_ms,
            heartbeat_interval_ms=max(500, self._settings.notify_session_timeout_ms // 5),
        )
        listener = LoggingRebalanceListener("notify")
        self._consumer.subscribe([self._settings.topics.scores], listener=listener)
        await self._consumer.start()
        self.loop = BatchLoop(
            self._consumer,
            self.handle,
            name="notify",
            max_records=500,
            quarantine=self.quarantine,
            watch=self.watch,
            reporter=self.reporter,
            group_id=group_id(self._settings),
            bootstrap=self._settings.bootstrap_servers,
            security=self._settings.kafka_security,
        )
        listener.on_revoked = self.loop.assignment_changed

    async def run(self) -> None:
        assert self.loop is not None
        try:
            # One fails, both stop: the watchdog never outlives the loop it watches.
            async with asyncio.TaskGroup() as group:
                group.create_task(self.loop.run())
                group.create_task(self.watch.run())
        finally:
            await self.close()

    def stop(self) -> None:
        self.watch.stop()
        if self.loop is not None:
            self.loop.stop()

    def problem(self) -> str | None:
        """None when consuming normally, else why not (for /readyz)."""
        if self.loop is not None and not self.loop.healthy:
            return self.loop.last_error
        return self.watch.problem()

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def handle(self, records: list[Record]) -> None:
        snapshots: list[ScoreSnapshot] = []
        for record in records:
            try:
                snapshots.append(decode(record))
            except ValueError as exc:
                SNAPSHOTS.labels("invalid").inc()
                assert self.quarantine is not None
                # Acknowledged before this batch's offsets are committed: never lost.
                await self.quarantine.send(record, exc)
        if not snapshots:
            return
        async with session_scope(self._sm) as session:
            outcome = await handle_snapshots(session, self._cfg, snapshots, self._clock())
        SNAPSHOTS.labels("ok").inc(len(snapshots))
        self._on_committed(outcome)
