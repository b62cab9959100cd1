"""Thin Kafka adapter: decode `kpi.scores` messages and hand each batch to the handler."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.handlers import Clock, NotifyConfig, Outcome, handle_snapshots
from services.notify.schemas import ScoreSnapshot
from shared.db import session_scope
from shared.kafka import BatchLoop, LoggingRebalanceListener, Record, create_consumer
from shared.settings import Settings

logger = logging.getLogger(__name__)

GROUP = "kpi-notify"

SNAPSHOTS = Counter(
    "kpi_notify_snapshots_total", "kpi.scores messages consumed by outcome", ["outcome"]
)


def group_id(settings: Settings) -> str:
    # The prefix isolates installations (and tests) sharing one cluster, like topic names.
    return f"{settings.topic_prefix}{GROUP}"


def decode(record: Record) -> ScoreSnapshot | None:
    """Parsed message, or None (logged and counted) for a malformed one."""
    try:
        if record.value is None:
            raise ValueError("empty message")
        return ScoreSnapshot.model_validate_json(record.value)
    except (ValidationError, ValueError) as exc:
        SNAPSHOTS.labels("invalid").inc()
        logger.warning(
            "skipping malformed kpi.scores message at %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            str(exc)[:300],
        )
        return None


class ScoresConsumer:
    """Consumes kpi.scores; each batch is one database transaction, then the Kafka commit."""

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
        self.loop: BatchLoop | None = None

    async def start(self) -> None:
        self._consumer = create_consumer(
            self._settings.bootstrap_servers,
            group_id=group_id(self._settings),
            client_id="kpi-notify",
            session_timeout_ms=self._settings.notify_session_timeout_ms,
            heartbeat_interval_ms=max(500, self._settings.notify_session_timeout_ms // 5),
        )
        self._consumer.subscribe(
            [self._settings.topics.scores], listener=LoggingRebalanceListener("notify")
        )
        await self._consumer.start()
        self.loop = BatchLoop(self._consumer, self.handle, name="notify-scores", max_records=500)

    async def run(self) -> None:
        assert self.loop is not None
        try:
            await self.loop.run()
        finally:
            await self.close()

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.stop()

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def handle(self, records: list[Record]) -> None:
        snapshots = [s for s in (decode(r) for r in records) if s is not None]
        if not snapshots:
            return
        async with session_scope(self._sm) as session:
            outcome = await handle_snapshots(session, self._cfg, snapshots, self._clock())
        SNAPSHOTS.labels("ok").inc(len(snapshots))
        self._on_committed(outcome)
