"""Ledger retention: kpi_facts' month partitions, created ahead and dropped past the retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import date, datetime

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.db import raw_connection
from services.scoring.engine import partition_sql, partitions, repository
from shared.db import session_scope, utcnow
from shared.settings import Settings

logger = logging.getLogger(__name__)

LEDGER_INTERVAL_SECONDS = 3600.0
LEDGER_CHUNK = 10_000

LEDGER_DROPPED = Counter(
    "kpi_scoring_ledger_facts_dropped_total",
    "Explain-ledger facts (kpi_facts rows) dropped after KPI_LEDGER_RETENTION_DAYS",
)


class LedgerRetention:
    """Keeps a partition for this month and the next two, and with
    ``KPI_LEDGER_RETENTION_DAYS`` drops the months before the one holding today - retention.

    Runs in every scoring process; an advisory lock lets one of them work at a time. The
    cut-off is stored first (``ledger_retention.kept_from``), so batches stop writing facts
    for those days before their partitions go.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utcnow,
        interval_seconds: float = LEDGER_INTERVAL_SECONDS,
        chunk: int = LEDGER_CHUNK,
    ) -> None:
        self.days = settings.ledger_retention_days
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.chunk = chunk
        self._stopping = asyncio.Event()
        self.dropped: list[date] = []

    def stop(self) -> None:
        self._stopping.set()

    async def _locked(self, session: AsyncSession) -> bool:
        conn = await raw_connection(session)
        return await repository.try_lock(conn, partition_sql.LEDGER_LOCK_KEY)

    async def run_once(self) -> int:
        """Create the coming months, then drop expired ones; returns facts dropped."""
        today = self.clock().date()
        for k in range(partitions.LEDGER_AHEAD_MONTHS + 1):
            month = partitions.month_start(today, k)
            async with session_scope(self.sessionmaker) as session:
                if not await self._locked(session):
                    return 0  # another scoring process is working
                conn = await raw_connection(session)
                if await partition_sql.create_ledger_partition(conn, month):
                    logger.info("scoring: created the explain-ledger partition of %s", month)
        kept_from = partitions.ledger_kept_from(today, self.days)
        if kept_from is None:
            return 0
        async with session_scope(self.sessionmaker) as session:
            if not await self._locked(session):
                return 0
            conn = await raw_connection(session)
            await partition_sql.set_ledger_kept_from(conn, kept_from)
            months = await partition_sql.ledger_months(conn)
        total = 0
        for month in partitions.ledger_droppable(months, kept_from):
            if self._stopping.is_set():
                break
            async with session_scope(self.sessionmaker) as session:
                if not await self._locked(session):
                    break
                conn = await raw_connection(session)
                rows = await partition_sql.drop_ledger_partition(conn, month)
            logger.info("scoring: dropped the explain ledger of %s (%d facts)", month, rows)
            self.dropped.append(month)
            total += rows
            LEDGER_DROPPED.inc(rows)
        while not self._stopping.is_set():
            async with session_scope(self.sessionmaker) as session:
                if not await self._locked(session):
                    break
                conn = await raw_connection(session)
                done = await partition_sql.purge_ledger_default(conn, kept_from, self.chunk)
            total += done
            LEDGER_DROPPED.inc(done)
            if done < self.chunk:
                break
        return total

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Housekeeping: a failed round (a lock timeout, say) is retried at the next.
                logger.exception("scoring: explain-ledger retention round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)
