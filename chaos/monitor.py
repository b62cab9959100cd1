"""Observes the pipeline from outside: topic ends, consumer positions, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.topics import Topics

logger = logging.getLogger("chaos.monitor")

T = TypeVar("T")
Ends = dict[tuple[str, int], int]


async def bounded(coro: Awaitable[T], timeout: float) -> T | None:
    """The result, or None when it failed or took too long (servers may be paused)."""
    try:
        return await asyncio.wait_for(coro, timeout)
    except Exception:
        return None


@dataclass
class Monitor:
    """Tails kpi.events, kpi.scores and kpi.deadletter (no group) and probes positions."""

    bootstrap: str
    dsn: str
    topics: Topics
    partitions: int
    ends: Ends = field(default_factory=dict)  # next offset after the last record seen
    deadletters: list[bytes] = field(default_factory=list)
    deadletter_keys: list[bytes | None] = field(default_factory=list)  # same order
    raw_ends: Ends = field(default_factory=dict)  # filled by the stream from send metadata
    _consumer: AIOKafkaConsumer | None = None
    _committers: dict[str, AIOKafkaConsumer] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _stop: bool = False

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            client_id="chaos-monitor",
            request_timeout_ms=10000,
        )
        await self._consumer.start()
        tps = [
            TopicPartition(t, p)
            for t in (self.topics.events, self.topics.scores, self.topics.deadletter)
            for p in range(self.partitions)
        ]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run(), name="chaos-monitor")

    async def _run(self) -> None:
        assert self._consumer is not None
        while not self._stop:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except Exception as exc:
                logger.warning("monitor fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for tp, recs in batch.items():
                if not recs:
                    continue
                self.ends[(tp.topic, tp.partition)] = recs[-1].offset + 1
                if tp.topic == self.topics.deadletter:
                    self.deadletters.extend(r.value or b"" for r in recs)
                    self.deadletter_keys.extend(r.key for r in recs)

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        for consumer in self._committers.values():
            await bounded(consumer.stop(), 10)

    async def tail_caught_up(self, topic: str) -> bool:
        """The tail read ``topic`` up to the broker's end (as the broker reports it)."""
        assert self._consumer is not None
        tps = [TopicPartition(topic, p) for p in range(self.partitions)]
        ends = await self._consumer.end_offsets(tps)
        return all(self.ends.get((tp.topic, tp.partition), 0) >= end for tp, end in ends.items())

    async def restart_tail(self, topics: list[str]) -> None:
        """After those topics' logs were replaced: forget their ends, read them from 0."""
        assert self._consumer is not None
        for key in [k for k in self.ends if k[0] in topics]:
            del self.ends[key]
        for key in [k for k in self.raw_ends if k[0] in topics]:
            del self.raw_ends[key]
        tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
        await self._consumer.seek_to_beginning(*[tp for tp in tps if tp in self._tailed])
        # Committed positions of the old broker's groups: probe with fresh clients.
        for consumer in self._committers.values():
            await bounded(consumer.stop(), 10)
        self._committers.clear()

    @property
    def _tailed(self) -> set[TopicPartition]:
        assert self._consumer is not None
        return set(self._consumer.assignment())

    async def incidents(self, kind: str) -> int | None:
        """Occurrences of platform incidents of ``kind`` so far (None: database unreachable)."""
        rows = await self.db_rows(
            "SELECT coalesce(sum(occurrences), 0) FROM platform_incidents WHERE kind = $1", kind
        )
        return None if rows is None else int(rows[0][0])

    async def quiet(self) -> bool:
        """Nothing produced so far is unapplied: raw -> events -> scores -> notify, and the
        tail has every dead letter (the stream must be paused)."""
        if not await self.tail_caught_up(self.topics.events):
            return False
        if await self.zero_lag(time.monotonic()) is None:
            return False
        scores = self.topic_ends(self.topics.scores)
        if not self.caught_up(await self.group_offsets("kpi-notify", list(scores)), scores):
            return False
        rows = await self.db_rows("SELECT count(*) FROM score_outbox")
        if rows is None or rows[0][0] != 0:
            return False
        return await self.tail_caught_up(self.topics.deadletter) and await self.tail_caught_up(
            self.topics.scores
        )

    def topic_ends(self, topic: str) -> Ends:
        return {k: v for k, v in self.ends.items() if k[0] == topic}

    # -- positions ----------------------------------------------------------------------

    async def group_offsets(self, group: str, tps: list[tuple[str, int]]) -> Ends | None:
        """Committed offsets of a consumer group (OffsetFetch without joining the group).

        The embedded broker's answer to the admin client's ListConsumerGroupOffsets cannot be
        decoded by aiokafka, so a member-less consumer of that group asks instead.
        """

        async def probe() -> Ends:
            consumer = self._committers.get(group)
            if consumer is None:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    group_id=group,
                    enable_auto_commit=False,
                    client_id=f"chaos-probe-{group}",
                    request_timeout_ms=5000,
                )
                await consumer.start()
                self._committers[group] = consumer
            out: Ends = {}
            for topic, partition in tps:
                got = await consumer.committed(TopicPartition(topic, partition))
                out[(topic, partition)] = got or 0
            return out

        return await bounded(probe(), 8)

    async def db_rows(self, sql: str, *args: Any) -> list[asyncpg.Record] | None:
        async def probe() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.dsn, timeout=4)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return await bounded(probe(), 8)

    async def scoring_offsets(self) -> Ends | None:
        rows = await self.db_rows(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1",
            "kpi-scoring",
        )
        return None if rows is None else {(r[0], r[1]): r[2] for r in rows}

    @staticmethod
    def caught_up(position: Ends | None, ends: Ends) -> bool:
        if position is None:
            return False
        return all(position.get(tp, 0) >= end for tp, end in ends.items())

    async def ingest_caught_up(self, raw_ends: Ends) -> bool:
        return self.caught_up(await self.group_offsets("kpi-ingest", list(raw_ends)), raw_ends)

    async def scoring_caught_up(self, ends: Ends) -> bool:
        return self.caught_up(await self.scoring_offsets(), ends)

    async def zero_lag(self, deadline: float) -> float | None:
        """Seconds until everything produced so far went raw -> kpi.events -> KPIs."""
        started = time.monotonic()
        raw = dict(self.raw_ends)
        while not await self.ingest_caught_up(raw):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.5)
        # What ingest (and HTTP intake) published until now must be applied by scoring.
        await asyncio.sleep(0.3)  # let the tail see ingest's last acknowledged batch
        events = self.topic_ends(self.topics.events)
        while not await self.scoring_caught_up(events):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    async def notify_settled(self) -> bool:
        """kpi.scores consumed by notify, score outbox empty, no delivery owed."""
        scores = self.topic_ends(self.topics.scores)
        if not self.caught_up(await self.group_offsets("kpi-notify", list(scores)), scores):
            return False
        rows = await self.db_rows(
            "SELECT (SELECT count(*) FROM score_outbox), "
            "(SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending'))"
        )
        return rows is not None and rows[0][0] == 0 and rows[0][1] == 0

    async def wait(
        self, check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.5
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await check():
                    return True
            await asyncio.sleep(interval)
        return False
