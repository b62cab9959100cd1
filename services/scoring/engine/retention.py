"""Dedup retention: generations of applied event ids, dropped whole past the replay horizon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.db import raw_connection
from services.scoring.engine import partition_sql, partitions, repository
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
    """Keeps processed_events' generations: opens the next one when the open one has taken
    claims for half the retention, creates the one after it ahead, and drops whole
    generations whose ids are all older than ``KPI_DEDUP_RETENTION_DAYS``.

    Runs in every scoring process; an advisory lock lets one of them work at a time. A
    switch or a drop is its own short transaction under the exclusive claim lock: claims
    wait for one catalogue change at most, and a switch for the batches under way.
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
        self.dropped: list[int] = []

    def stop(self) -> None:
        self._stopping.set()

    async def rotate(self) -> bool:
        """Open the next generation when due and create the one after the open one ahead.

        Returns False when another scoring process holds the worker lock.
        """
        now = self.clock()
        async with session_scope(self.sessionmaker) as session:
            conn = await raw_connection(session)
            if not await repository.try_lock(conn, repository.RETENTION_LOCK_KEY):
                return False
            numbers, generations = await partition_sql.dedup_layout(conn)
            target = partitions.due_switch(numbers, generations, now, self.days)
            cur = partitions.current(generations)
            ahead = (target if target is not None else cur.number if cur else 0) + 1
            if target is None and ahead in numbers:
                return True  # nothing to change: no lock for claims to wait on
            await partition_sql.lock_dedup_exclusive(conn)
            for number in (target, ahead):
                if number is not None and await partition_sql.create_dedup_partition(conn, number):
                    logger.info("scoring: created dedup partition of generation %d", number)
            if target is not None:
                await partition_sql.open_dedup_generation(conn, target, now)
                logger.info("scoring: event ids are now claimed into generation %d", target)
        return True

    async def purge(self) -> int:
        """Rotate, then drop every expired generation and purge the default partition;
        returns how many ids were forgotten."""
        if not await self.rotate():
            return 0  # another scoring process is working
        if self.days == 0:
            return 0
        now = self.clock()
        before = now - timedelta(days=self.days)
        total = 0
        async with session_scope(self.sessionmaker) as session:
            numbers, generations = await partition_sql.dedup_layout(await raw_connection(session))
        for number in partitions.droppable(numbers, generations, now, self.days):
            if self._stopping.is_set():
                break
            # Counted before the drop and outside the lock: a closed generation never changes.
            async with session_scope(self.sessionmaker) as session:
                conn = await raw_connection(session)
                rows = await partition_sql.count_dedup_partition(conn, number)
            async with session_scope(self.sessionmaker) as session:
                conn = await raw_connection(session)
                if not await repository.try_lock(conn, repository.RETENTION_LOCK_KEY):
                    break
                await partition_sql.lock_dedup_exclusive(conn)
                await partition_sql.drop_dedup_partition(conn, number)
            logger.info("scoring: dropped dedup generation %d (%d event ids)", number, rows)
            self.dropped.append(number)
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
