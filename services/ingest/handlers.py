"""Ingest use-cases: a consumed Kafka batch and an HTTP submission, classified and published."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest import repository
from services.ingest.intake import Outgoing, classify, classify_item, stats_delta
from services.ingest.publisher import BrokerHealth, BrokerUnavailable, count_metrics, publish
from shared.db import session_scope, utcnow
from shared.deadletter import Source
from shared.events import NOT_JSON, InvalidEvent
from shared.kafka import Record
from shared.text import scrub
from shared.topics import Topics

logger = logging.getLogger(__name__)

STATS_TIMEOUT_SECONDS = 2.0
HTTP_SOURCE = Source("http")


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

    async def store(self, outgoing: list[Outgoing]) -> None:
        """Publish to kpi.events / the dead-letter topic, then count (BrokerUnavailable)."""
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
                # Bounded: with PostgreSQL paused the write would hold the answer for the
                # driver's timeouts, and intake needs only the broker.
                async with asyncio.timeout(STATS_TIMEOUT_SECONDS):
                    async with session_scope(self._sessionmaker) as session:
                        await repository.add_stats(session, stats_delta(outgoing))
            except Exception:
                # The events are already durable on the broker: answering 503 now would
                # only make the caller re-send them. Stats under-count instead (logged).
                logger.exception("ingest stats not recorded for %d http events", len(outgoing))
        count_metrics(outgoing)

    async def reject_body(self, body: bytes, reason: str) -> None:
        """Dead-letter a body that is not JSON at all (the caller gets 400)."""
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
        await self.store([item])

    async def submit(self, items: list[object], source: Source = HTTP_SOURCE) -> HttpResult:
        at = utcnow()
        outgoing: list[Outgoing] = []
        results: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            out = classify_item(item, source, at)
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
        await self.store(outgoing)
        accepted = sum(1 for o in outgoing if not o.deadletter)
        rejected = len(outgoing) - accepted
        status = 422 if rejected and not accepted else 202
        return HttpResult(status, results, accepted, rejected)
