"""Dedup retention: weekly partitions of applied event ids, dropped past the replay horizon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.db import raw_connection
from services.scoring.engine import partitions, repository
from shared.db import session_scope, utcnow
from shared.settings import Settings

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 3600.0
RETENTION_CHUNK = 10_000

DEDUP_PURGED = Counter(
    "kpi_scoring_dedup_purged_total",
    "Applied event ids forgotten after KPI_DEDUP_RETENTION_DAYS (replay horizon)",
)


class DedupRetention:
    """Keeps processed_events' weekly partitions: opens the current week, creates the next
    one ahead, and drops whole weeks whose ids are all older than ``KPI_DEDUP_RETENTION_DAYS``.

    Runs in every scoring process; an advisory lock lets one of them work at a time. Each
    switch or drop is its own short transaction under the exclusive claim lock, so claims
    wait at most for one catalogue change (and the switch for the batches under way).
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utcnow,
        interval_seconds: float = RETENTION_INTERVAL_SECONDS,
        chunk: int = RETENTION_CHUNK,
    ) -> None:
        self.days = settings.dedup_retention_days
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.chunk = chunk
        self._stopping = asyncio.Event()
        self.purged = 0
        self.dropped: list[date] = []

    def stop(self) -> None:
        self._stopping.set()

    async def rotate(self) -> bool:
        """Open the current week's bucket and create next week's partition ahead.

        Returns False when another scoring process holds the worker lock.
        """
        now = self.clock()
        target = partitions.bucket_for(now)
        ahead = target + timedelta(days=partitions.WIDTH_DAYS)
        async with session_scope(self.sessionmaker) as session:
            conn = await raw_connection(session)
            if not await repository.try_lock(conn, repository.RETENTION_LOCK_KEY):
                return False
            lowers, buckets = await repository.dedup_layout(conn)
            current = next((b.lower for b in buckets if b.closed_at is None), None)
            switch = current is None or current < target
            if not switch and target in lowers and ahead in lowers:
                return True  # nothing to change: no lock that claims would wait for
            await repository.lock_dedup_exclusive(conn)
            for lower in (target, ahead):
                if await repository.create_dedup_partition(conn, lower):
                    logger.info("scoring: created dedup partition for the week of %s", lower)
            if switch:
                await repository.open_dedup_bucket(conn, target, now)
                logger.info("scoring: event ids are now claimed into the week of %s", target)
        return True

    async def purge(self) -> int:
        """Rotate, then drop every expired week and purge the default partition; returns
        how many ids were forgotten."""
        if not await self.rotate():
            return 0  # another scoring process is working
        if self.days == 0:
            return 0
        now = self.clock()
        before = now - timedelta(days=self.days)
        total = 0
        async with self.sessionmaker() as session:
            conn = await raw_connection(session)
            lowers, buckets = await repository.dedup_layout(conn)
            await session.rollback()
        for lower in partitions.droppable(lowers, buckets, now, self.days):
            if self._stopping.is_set():
                break
            # Counted before the drop, outside the lock: a closed week no longer changes.
            async with self.sessionmaker() as session:
                conn = await raw_connection(session)
                rows = await repository.count_dedup_partition(conn, lower)
                await session.rollback()
            async with session_scope(self.sessionmaker) as session:
                conn = await raw_connection(session)
                if not await repository.try_lock(conn, repository.RETENTION_LOCK_KEY):
                    break
                await repository.lock_dedup_exclusive(conn)
                await repository.drop_dedup_partition(conn, lower)
            logger.info("scoring: dropped the dedup partition of the week of %s", lower)
            self.dropped.append(lower)
            total += rows
            DEDUP_PURGED.inc(rows)
        while not self._stopping.is_set():
            async with session_scope(self.sessionmaker) as session:
                conn = await raw_connection(session)
                if not await repository.try_lock(conn, repository.RETENTION_LOCK_KEY):
                    break  # another scoring process is purging
                done = await repository.purge_processed(conn, before, self.chunk)
            total += done
            DEDUP_PURGED.inc(done)
            if done < self.chunk:
                break
        if total:
            logger.info(
                "scoring: forgot %d event ids first seen before %s (retention %d days)",
                total,
                before.isoformat(),
                self.days,
            )
        self.purged += total
        return total

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Retention is housekeeping: a failed round is retried at the next one.
                logger.exception("scoring: dedup retention round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)
