"""Re-measuring stored tickets with today's settings (the `kpi rescore` command)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from services.scoring.db import Conn
from services.scoring.engine import outbox, repository
from services.scoring.engine.handlers import TICKETS, write_deltas
from services.scoring.kpi.apply import remeasure_tickets
from services.scoring.kpi.measure import Measure


@dataclass
class RescoreResult:
    """What re-measuring a set of stored tickets did (or would do, in a dry run)."""

    scanned: int = 0
    changed: int = 0
    specialists: list[str] = field(default_factory=list)


async def rescore_tickets(
    conn: Conn, ticket_ids: Collection[str], measure: Measure, *, dry_run: bool = False
) -> RescoreResult:
    """Re-measure stored tickets with today's settings, inside the caller's transaction.

    The engine re-measures a ticket only when an event for it arrives; this moves every
    given ticket's share of kpi_daily/kpi_facts from what they hold (the stored response
    hours) to what ``measure`` gives now. The rows are locked in key order exactly like
    the engine, so it is safe while scoring runs. A ticket whose share does not move is not
    written, which makes a second run a no-op. ``dry_run`` counts without writing (the
    caller should still roll back: locking creates rows for unknown ids).
    """
    result = RescoreResult()
    if not ticket_ids:
        return result
    docs = await repository.lock_states(conn, *TICKETS, ticket_ids)
    done = remeasure_tickets(docs, measure)
    result.scanned, result.changed = done.scanned, len(done.tickets)
    result.specialists = done.affected
    if dry_run or not done.tickets:
        return result
    await repository.save_states(conn, *TICKETS, done.tickets)
    await write_deltas(conn, done.deltas)
    if result.specialists:
        await outbox.enqueue_scores(conn, result.specialists, "rescore")
    return result
