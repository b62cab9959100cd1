"""Dedup retention: forgets applied event ids once they are past the replay horizon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.db import raw_connection
from services.scoring.engine import repository
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
    """Forgets applied event ids older than ``KPI_DEDUP_RETENTION_DAYS`` (the replay horizon).

    Runs in every scoring process; an advisory lock lets one of them work at a time. Each
    chunk is its own short transaction so claims of new events never wait long behind it.
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

    def stop(self) -> None:
        self._stopping.set()

    async def purge(self) -> int:
        """Delete every expired id now (chunk by chunk); returns how many went."""
        if self.days == 0:
            return 0
        before = self.clock() - timedelta(days=self.days)
        total = 0
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
