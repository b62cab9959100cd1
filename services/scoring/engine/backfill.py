"""Backfill of the SPEC §3a measures into kpi_daily/kpi_facts for tickets stored before them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.db import Conn
from services.scoring.engine.rescore import rescore_tickets
from services.scoring.kpi.apply import MEASURES_MARK, MEASURES_VERSION
from services.scoring.kpi.measure import Measure
from shared.db import raw_connection, session_scope

logger = logging.getLogger(__name__)

# One row of scoring_backfills; a later backfill (another mark version) gets its own name.
MEASURES_BACKFILL = f"measures-v{MEASURES_VERSION}"
BACKFILL_BATCH = 500
RETRY_SECONDS = 30.0
LOG_EVERY_SECONDS = 10.0


@dataclass
class BackfillStep:
    """One batch: how many unmarked tickets it took, how many of them moved, and whether
    the backfill is (now) complete."""

    scanned: int = 0
    changed: int = 0
    done: bool = False
    after: str = ""


async def _claim(conn: Conn, name: str) -> tuple[str, bool]:
    """Lock the backfill's row (creating it on first use); returns (cursor, done)."""
    await conn.execute(
        "INSERT INTO scoring_backfills (name) VALUES ($1) ON CONFLICT DO NOTHING", name
    )
    row = await conn.fetchrow(
        "SELECT after_id, done_at IS NOT NULL AS done FROM scoring_backfills "
        "WHERE name = $1 FOR UPDATE",
        name,
    )
    if row is None:  # pragma: no cover - inserted just above, in this transaction
        raise RuntimeError(f"backfill row {name!r} is missing")
    return str(row["after_id"]), bool(row["done"])


async def _unmarked_ids(conn: Conn, after: str, limit: int) -> list[str]:
    # Keyset paging on the primary key; the mark filter rides the scan (one pass in all).
    rows = await conn.fetch(
        f"""
        SELECT ticket_id FROM ticket_states
        WHERE ticket_id > $1 AND (state->>'{MEASURES_MARK}') IS DISTINCT FROM $3
        ORDER BY ticket_id LIMIT $2
        """,
        after,
        limit,
        str(MEASURES_VERSION),
    )
    return [r[0] for r in rows]


async def count_unmarked(conn: Conn) -> int:
    """Tickets whose stored document lacks the measures mark (what is left to backfill)."""
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM ticket_states "
            f"WHERE (state->>'{MEASURES_MARK}') IS DISTINCT FROM $1",
            str(MEASURES_VERSION),
        )
    )


async def backfill_step(
    conn: Conn, measure: Measure, batch: int = BACKFILL_BATCH, name: str = MEASURES_BACKFILL
) -> BackfillStep:
    """Backfill the next batch inside the caller's transaction (commit it to keep it).

    Replicas take turns on the progress row, and each ticket is re-measured under the same
    row locks as the engine: a document the engine (or another replica) has marked since is
    left alone, so running twice or concurrently adds every ticket's measures exactly once.
    """
    after, done = await _claim(conn, name)
    if done:
        return BackfillStep(done=True, after=after)
    ids = await _unmarked_ids(conn, after, batch)
    if not ids:
        await conn.execute(
            "UPDATE scoring_backfills SET done_at = now(), updated_at = now() WHERE name = $1",
            name,
        )
        return BackfillStep(done=True, after=after)
    result = await rescore_tickets(conn, ids, measure)
    await conn.execute(
        """
        UPDATE scoring_backfills
        SET after_id = $2, tickets = tickets + $3, changed = changed + $4, updated_at = now()
        WHERE name = $1
        """,
        name,
        ids[-1],
        result.scanned,
        result.changed,
    )
    return BackfillStep(result.scanned, result.changed, False, ids[-1])


class MeasuresBackfill:
    """Runs :func:`backfill_step` at scoring start-up until done, one transaction per batch.

    Every scoring process runs it; their batches take turns on the progress row, so a
    restart resumes where the last committed batch ended and two replicas share the work.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        measure: Measure,
        *,
        batch: int = BACKFILL_BATCH,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.measure = measure
        self.batch = batch
        self.retry_seconds = retry_seconds
        self.done = False
        self.scanned = 0
        self.changed = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def step(self) -> BackfillStep:
        async with session_scope(self.sessionmaker) as session:
            conn = await raw_connection(session)
            return await backfill_step(conn, self.measure, self.batch)

    async def run_once(self) -> None:
        """Batches until the backfill is complete (or the process stops)."""
        started = last_log = time.monotonic()
        left: int | None = None
        while not self._stopping.is_set():
            step = await self.step()
            if step.done:
                if self.scanned:
                    logger.info(
                        "scoring: measures backfill complete: %d tickets, %d changed, %.1fs",
                        self.scanned,
                        self.changed,
                        time.monotonic() - started,
                    )
                self.done = True
                return
            if left is None:
                async with session_scope(self.sessionmaker) as session:
                    left = await count_unmarked(await raw_connection(session)) + step.scanned
                logger.info("scoring: backfilling the SPEC §3a measures of %d tickets", left)
            self.scanned += step.scanned
            self.changed += step.changed
            if time.monotonic() - last_log >= LOG_EVERY_SECONDS:
                last_log = time.monotonic()
                logger.info(
                    "scoring: measures backfill %d/%d tickets (%d changed), at %r",
                    self.scanned,
                    left,
                    self.changed,
                    step.after,
                )

    async def run(self) -> None:
        while not self._stopping.is_set() and not self.done:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Committed batches stay done; the next attempt resumes after them.
                logger.exception("scoring: measures backfill batch failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.retry_seconds)
