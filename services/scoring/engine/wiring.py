"""Start-up of the engine: builds the consumer, relay and retention and runs them as tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.scoring.config import ScoringConfig
from services.scoring.engine.backfill import MeasuresBackfill
from services.scoring.engine.consumer import GROUP_ID, ScoringConsumer
from services.scoring.engine.ledger_retention import LedgerRetention
from services.scoring.engine.relay import ScoreRelay
from services.scoring.engine.retention import DedupRetention
from shared.db import utcnow
from shared.kafka import create_producer
from shared.runtime import Runtime

logger = logging.getLogger(__name__)


async def start_engine(
    runtime: Runtime, config: ScoringConfig, *, clock: Callable[[], datetime] | None = None
) -> None:
    """Start the scoring consumer and the kpi.scores relay as runtime-owned tasks."""
    settings = runtime.settings
    if config.measure.hours_fn is not None:
        logger.info("scoring: response times in business hours of %s", config.measure.calendar)
    consumer = ScoringConsumer(
        settings,
        runtime.sessionmaker,
        # The prefix isolates installations (and tests) sharing one cluster, like topics.
        group_id=f"{settings.topic_prefix}{GROUP_ID}",
        max_records=settings.scoring_max_batch,
        consumer_options={
            "session_timeout_ms": settings.scoring_session_timeout_ms,
            "heartbeat_interval_ms": max(100, settings.scoring_session_timeout_ms // 5),
        },
        config=config,
    )
    await consumer.start()
    relay_producer = create_producer(
        settings.bootstrap_servers, client_id="kpi-scoring-relay", security=settings.kafka_security
    )
    await relay_producer.start()
    relay = ScoreRelay(
        settings, runtime.sessionmaker, relay_producer, clock=clock or utcnow, config=config
    )
    retention = DedupRetention(settings, runtime.sessionmaker, clock=clock or utcnow)
    # Tickets stored by a release before the SPEC §3a measures get them added once; it runs
    # beside the consumer (same row locks), so scoring does not wait for it.
    backfill = MeasuresBackfill(runtime.sessionmaker, config.measure)
    ledger = LedgerRetention(settings, runtime.sessionmaker, clock=clock or utcnow)
    tasks = [
        runtime.spawn(consumer.run(), "scoring-consumer"),
        runtime.spawn(consumer.watch.run(), "scoring-stall-watch"),
        runtime.spawn(relay.run(), "scoring-relay"),
        runtime.spawn(retention.run(), "scoring-dedup-retention"),
        runtime.spawn(backfill.run(), "scoring-measures-backfill"),
        runtime.spawn(ledger.run(), "scoring-ledger-retention"),
    ]

    async def shutdown() -> None:
        # Let the current batch and relay round finish before their clients close.
        consumer.stop()
        relay.stop()
        retention.stop()
        backfill.stop()
        ledger.stop()
        await asyncio.wait(tasks, timeout=10)
        await consumer.close()
        await relay_producer.stop()

    runtime.stoppers.append(shutdown)
    runtime.extra_checks["scoring_consumer"] = lambda: (
        None if consumer.healthy else consumer.last_error or "consumer failing"
    )
    runtime.extra_checks["scoring_stall"] = consumer.watch.problem
    runtime.extra_checks["scoring_relay"] = lambda: (
        None if relay.healthy else relay.last_error or "relay failing"
    )
