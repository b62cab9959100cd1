"""Scoring use-case: apply one batch of events to state and aggregates in one transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Collection, Sequence, Set
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.db import Conn, raw_connection
from services.scoring.engine import breakdown_writes, outbox, repository
from services.scoring.kpi.apply import (
    Deltas,
    apply_events,
    drop_events,
    legacy_survey_facts,
    route,
)
from services.scoring.kpi.measure import Measure
from shared.events import Event, encode_event

logger = logging.getLogger(__name__)

TICKETS = ("ticket_states", "ticket_id")
SESSIONS = ("training_sessions", "session_id")


def payload_hash(event: Event) -> str:
    """sha256 of the canonical encoding: equal for the same event via HTTP and Kafka."""
    return hashlib.sha256(encode_event(event)).hexdigest()


@dataclass(frozen=True)
class Incoming:
    """One input message; ``event`` is None for an invalid one (already dead-lettered)."""

    event: Event | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    hash: str | None = None
    # Identity of the record (shared.offsets.fingerprint); set on the last record of each
    # partition in a batch, stored with the offset it advances to.
    fingerprint: str | None = None

    @classmethod
    def of(cls, event: Event) -> Incoming:
        return cls(event)


@dataclass
class BatchResult:
    """What a batch did; counters feed metrics once the transaction has committed."""

    received: int = 0
    stale: int = 0  # below the stored offset: already applied (redelivery or zombie)
    invalid: int = 0
    duplicates: int = 0
    conflicts: int = 0
    applied: int = 0
    new_issues: int = 0
    issues_by_kind: dict[str, int] = field(default_factory=dict)
    specialists: list[str] = field(default_factory=list)
    # Specialists this batch inserted into (or found in) the directory; callers that cache
    # known ids add them once the transaction has committed.
    new_specialists: list[str] = field(default_factory=list)
    # Partitions whose records start after the stored offset (nothing of them was applied):
    # partition -> stored next offset, where the consumer must seek back to.
    gaps: dict[tuple[str, int], int] = field(default_factory=dict)
    # Invalid records this transaction moves the offset past (topic, partition, offset):
    # the ones to dead-letter before it commits; fenced re-reads are not among them.
    passed_invalid: list[tuple[str, int, int]] = field(default_factory=list)


async def process_batch(
    session: AsyncSession,
    items: Sequence[Incoming | Event],
    *,
    measure: Measure,
    group_id: str | None = None,
    accept_gaps: Collection[tuple[str, int]] = (),
    known_specialists: Set[str] = frozenset(),
) -> BatchResult:
    """Apply ``items`` inside the session's transaction; the caller commits.

    With ``group_id`` the records' Kafka offsets are checked and advanced in the same
    transaction: records below the stored offset are dropped, which fences a consumer
    that lost its partitions and makes a redelivered batch a no-op.

    ``measure`` gives the day buckets and how response times are measured.
    ``known_specialists`` are ids known to exist in the directory already (not inserted).
    """
    result = BatchResult(received=len(items))
    conn = await raw_connection(session)
    incoming = [i if isinstance(i, Incoming) else Incoming.of(i) for i in items]

    if group_id is not None:
        incoming = await _fence(conn, group_id, incoming, result, accept_gaps)

    # In-batch dedup: the first occurrence wins, like the database.
    first: dict[str, tuple[Event, str]] = {}
    conflicts: list[tuple[str, str]] = []
    for item in incoming:
        if item.event is None:
            result.invalid += 1
            if item.topic is not None and item.partition is not None and item.offset is not None:
                result.passed_invalid.append((item.topic, item.partition, item.offset))
            continue
        digest = item.hash or payload_hash(item.event)
        seen = first.get(item.event.event_id)
        if seen is None:
            first[item.event.event_id] = (item.event, digest)
            continue
        result.duplicates += 1
        if seen[1] != digest:
            conflicts.append((item.event.event_id, digest))
    if not first:
        await _record_conflicts(conn, conflicts, result)
        return result

    ids = list(first)
    claimed = await repository.claim_events(conn, ids, [first[i][1] for i in ids])
    known = [i for i in ids if i not in claimed]
    if known:
        result.duplicates += len(known)
        stored = await repository.stored_hashes(conn, known)
        conflicts.extend((i, first[i][1]) for i in known if stored.get(i) != first[i][1])
    await _record_conflicts(conn, conflicts, result)

    events = [first[i][0] for i in ids if i in claimed]
    result.applied = len(events)
    if events:
        await _apply(conn, events, measure, result, known_specialists)
    return result


async def _fence(
    conn: Conn,
    group_id: str,
    incoming: list[Incoming],
    result: BatchResult,
    accept_gaps: Collection[tuple[str, int]],
) -> list[Incoming]:
    lowest: dict[tuple[str, int], int] = {}
    for item in incoming:
        if item.topic is not None and item.partition is not None and item.offset is not None:
            tp = (item.topic, item.partition)
            low = lowest.get(tp)
            if low is None or item.offset < low:
                lowest[tp] = item.offset
    if not lowest:
        return incoming
    stored = await repository.lock_offsets(conn, group_id, list(lowest))
    for tp, low in lowest.items():
        floor = stored.get(tp)
        if floor is not None and low > floor and tp not in accept_gaps:
            # Applying would skip offsets floor..low-1 for good; make the consumer re-read.
            result.gaps[tp] = floor
    # Partitions whose every record is at or above the stored offset keep all of them
    # (the common case): only the others need a per-record check.
    clean: set[tuple[str, int]] = set()
    for tp, low in lowest.items():
        floor = stored.get(tp)
        if tp not in result.gaps and (floor is None or low >= floor):
            clean.add(tp)
    kept: list[Incoming] = []
    advance: dict[tuple[str, int], int] = {}
    fingerprints: dict[tuple[str, int], str | None] = {}
    for item in incoming:
        if item.topic is None or item.partition is None or item.offset is None:
            kept.append(item)
            continue
        tp = (item.topic, item.partition)
        if tp not in clean:
            if tp in result.gaps:
                continue
            floor = stored.get(tp)
            if floor is not None and item.offset < floor:
                result.stale += 1
                continue
        kept.append(item)
        top = advance.get(tp)
        if top is None or item.offset >= top:
            advance[tp] = item.offset + 1
            fingerprints[tp] = item.fingerprint
    if advance:
        await repository.store_offsets(conn, group_id, advance, fingerprints)
    return kept


async def _record_conflicts(
    conn: Conn, conflicts: list[tuple[str, str]], result: BatchResult
) -> None:
    if conflicts:
        result.conflicts += len(conflicts)
        logger.warning(
            "%d event ids seen again with a different payload (first version kept), e.g. %s",
            len(conflicts),
            conflicts[0][0],
        )
        await repository.record_conflicts(conn, conflicts)


async def write_deltas(conn: Conn, deltas: Deltas) -> int:
    """Apply settled deltas and issue changes; returns how many issues were new."""
    if deltas.daily:
        await repository.add_daily(conn, deltas.daily)
    # Not only when kpi_daily moves: a bucket's share can pass from one source to another
    # with no net change (one ticket's closure stops counting as another's starts to), and
    # skipping that leaves the explain ledger blaming the wrong ticket for good.
    if deltas.facts:
        await repository.add_facts(conn, deltas.facts)
    # Apart from kpi_daily: a late ticket.created moves a share between channels alone.
    if deltas.channels:
        await breakdown_writes.add_channels(conn, deltas.channels)
    if deltas.buckets:
        await breakdown_writes.add_buckets(conn, deltas.buckets)
    if deltas.added or deltas.removed:
        return await repository.set_issues(conn, deltas.added, deltas.removed)
    return 0


async def _apply(
    conn: Conn,
    events: list[Event],
    measure: Measure,
    result: BatchResult,
    known_specialists: Set[str] = frozenset(),
) -> None:
    routed = route(events)
    legacy = legacy_survey_facts(routed, measure, dt.datetime.now(dt.UTC))
    if legacy:
        # Counted as event:<id> by the release before issue 17 and redelivered after the
        # dedup table forgot the id: already in the aggregates, not counted again.
        counted = await breakdown_writes.existing_facts(conn, sorted(legacy))
        if counted:
            drop_events(routed, [legacy[k] for k in sorted(counted)])
    # Rows are locked in key order, tickets before sessions, in every transaction alike.
    tickets = await repository.lock_states(conn, *TICKETS, routed.tickets) if routed.tickets else {}
    sessions = (
        await repository.lock_states(conn, *SESSIONS, routed.sessions) if routed.sessions else {}
    )
    applied = apply_events(routed, tickets, sessions, measure)
    if applied.tickets:
        await repository.save_states(conn, *TICKETS, applied.tickets)
    if applied.sessions:
        await repository.save_states(conn, *SESSIONS, applied.sessions)
    fresh = applied.specialists - known_specialists
    if fresh:
        await repository.ensure_specialists(conn, fresh)
        result.new_specialists = sorted(fresh)
    result.new_issues = await write_deltas(conn, applied.deltas)
    for _, issue in applied.deltas.added:
        result.issues_by_kind[issue] = result.issues_by_kind.get(issue, 0) + 1
    if applied.affected:
        await outbox.enqueue_scores(conn, applied.affected, "events")
    result.specialists = applied.affected


def merge(results: list[BatchResult]) -> BatchResult:
    """One result for batches applied side by side (one per group of partitions)."""
    if len(results) == 1:
        return results[0]
    out = BatchResult()
    specialists: set[str] = set()
    for r in results:
        out.received += r.received
        out.stale += r.stale
        out.invalid += r.invalid
        out.duplicates += r.duplicates
        out.conflicts += r.conflicts
        out.applied += r.applied
        out.new_issues += r.new_issues
        for issue, n in r.issues_by_kind.items():
            out.issues_by_kind[issue] = out.issues_by_kind.get(issue, 0) + n
        specialists.update(r.specialists)
        out.new_specialists.extend(r.new_specialists)
        out.gaps.update(r.gaps)
    out.specialists = sorted(specialists)
    return out
