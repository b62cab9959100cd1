"""Kafka adapter of ingest: the producer and the `kpi-ingest` consumer, reconnecting forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest.handlers import KafkaIntake
from services.ingest.publisher import BrokerHealth
from shared.health import HealthReporter
from shared.kafka import (
    BatchLoop,
    LoggingRebalanceListener,
    Quarantine,
    create_consumer,
    create_producer,
)
from shared.runtime import tune_gc_for_batches
from shared.settings import Settings
from shared.watchdog import StallWatch

logger = logging.getLogger(__name__)

GROUP_ID = "kpi-ingest"


class IngestPipeline:
    """Starts (with backoff) the producer and the consumer, then runs the batch loop.

    The service process comes up even while the broker is down; until the clients are
    connected HTTP intake answers 503 and /readyz names the reason.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        *,
        max_records: int = 2000,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.health = BrokerHealth()
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.loop: BatchLoop | None = None
        self.reporter = HealthReporter("ingest", sessionmaker)
        self.watch = StallWatch("ingest", self.group_id, self.reporter, settings.stall_seconds)
        self._listener = LoggingRebalanceListener("ingest")
        self.startup_error: str | None = "starting"
        self._max_records = max_records
        self._stopping = asyncio.Event()

    def problem(self) -> str | None:
        """None when consuming normally, else why not (for /readyz)."""
        if self.startup_error is not None:
            return f"not connected: {self.startup_error}"
        if self.loop is not None and not self.loop.healthy:
            return f"consumer paused, retrying: {self.loop.last_error}"
        if self.health.last_error is not None:
            return f"broker: {self.health.last_error}"
        return self.watch.problem()

    @property
    def group_id(self) -> str:
        # The prefix isolates installations (and tests) sharing one cluster.
        return f"{self.settings.topic_prefix}{GROUP_ID}"

    async def _connect(self) -> None:
        # The producer first and on its own: HTTP intake needs only it, and the group
        # join of the consumer can take seconds.
        attempt = 0
        while not self._stopping.is_set() and self.producer is None:
            producer = create_producer(
                self.settings.bootstrap_servers,
                client_id="kpi-ingest",
                security=self.settings.kafka_security,
                linger_ms=10,
            )
            try:
                await producer.start()
                self.producer = producer
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                attempt += 1
                await self._retry_later(attempt, exc)
        while not self._stopping.is_set() and self.consumer is None:
            consumer = create_consumer(
                self.settings.bootstrap_servers,
                group_id=self.group_id,
                client_id="kpi-ingest",
                security=self.settings.kafka_security,
                session_timeout_ms=self.settings.ingest_session_timeout_ms,
                heartbeat_interval_ms=max(300, self.settings.ingest_session_timeout_ms // 5),
            )
            try:
                consumer.subscribe(list(self.settings.topics.raw), listener=self._listener)
                await consumer.start()
                self.consumer = consumer
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                attempt += 1
                await self._retry_later(attempt, exc)
        if self.consumer is not None:
            self.startup_error = None

    async def _retry_later(self, attempt: int, exc: BaseException) -> None:
        self.startup_error = f"{type(exc).__name__}: {exc}"
        logger.warning("ingest: broker connection failed (attempt %d): %s", attempt, exc)
        delay = min(10.0, 0.5 * 2 ** min(attempt, 5)) * (0.5 + random.random() / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def run(self) -> None:
        try:
            # One fails, both stop: the watchdog never outlives the loop it watches.
            async with asyncio.TaskGroup() as group:
                group.create_task(self._run())
                group.create_task(self.watch.run())
        finally:
            await self.close()

    async def _run(self) -> None:
        tune_gc_for_batches()
        await self._connect()
        if self.consumer is None or self.producer is None or self._stopping.is_set():
            return
        handler = KafkaIntake(self.producer, self.settings.topics, self.sessionmaker, self.health)
        self.loop = BatchLoop(
            self.consumer,
            handler,
            name="ingest",
            max_records=self._max_records,
            quarantine=Quarantine(
                self.producer, self.settings.topics, service="ingest", reporter=self.reporter
            ),
            watch=self.watch,
            reporter=self.reporter,
            group_id=self.group_id,
            bootstrap=self.settings.bootstrap_servers,
            security=self.settings.kafka_security,
        )
        self._listener.on_revoked = self.loop.assignment_changed
        logger.info(
            "ingest: consuming %s as group %s", ",".join(self.settings.topics.raw), self.group_id
        )
        await self.loop.run()

    async def stop(self) -> None:
        self._stopping.set()
        self.watch.stop()
        if self.loop is not None:
            self.loop.stop()

    async def close(self) -> None:
        """Close the clients once the loop has finished (nothing uncommitted is lost)."""
        producer, self.producer = self.producer, None
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
