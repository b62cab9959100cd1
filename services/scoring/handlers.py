"""Scoring use-case: apply one batch of events to state and aggregates in one transaction."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import repository
from services.scoring.kpi.contributions import (
    Contributions,
    HoursFn,
    diff_contributions,
    simple_contributions,
    ticket_contributions_and_issues,
    training_contributions,
)
from services.scoring.kpi.ticket import TicketState, routes_to_session, routes_to_ticket
from services.scoring.kpi.training import TrainingSession
from shared.catalogue import AVG_RESPONSE_TIME_HOURS
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


def _add(
    into: dict[tuple[object, ...], tuple[float, int]], key: tuple[object, ...], num: float, den: int
) -> None:
    old = into.get(key)
    into[key] = (num, den) if old is None else (old[0] + num, old[1] + den)


async def process_batch(
    session: AsyncSession,
    items: Sequence[Incoming | Event],
    *,
    tz: tzinfo,
    group_id: str | None = None,
    accept_gaps: Collection[tuple[str, int]] = (),
    hours_fn: HoursFn | None = None,
    known_specialists: Set[str] = frozenset(),
) -> BatchResult:
    """Apply ``items`` inside the session's transaction; the caller commits.

    With ``group_id`` the records' Kafka offsets are checked and advanced in the same
    transaction: records below the stored offset are dropped, which fences a consumer
    that lost its partitions and makes a redelivered batch a no-op.

    ``hours_fn`` (a business calendar) measures response times; None = calendar hours.
    ``known_specialists`` are ids known to exist in the directory already (not inserted).
    """
    result = BatchResult(received=len(items))
    conn = await repository.raw_connection(session)
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
        await _apply(conn, events, tz, result, hours_fn, known_specialists)
    return result


async def _fence(
    conn: repository.Raw,
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
    conn: repository.Raw, conflicts: list[tuple[str, str]], result: BatchResult
) -> None:
    if conflicts:
        result.conflicts += len(conflicts)
        logger.warning(
            "%d event ids seen again with a different payload (first version kept), e.g. %s",
            len(conflicts),
            conflicts[0][0],
        )
        await repository.record_conflicts(conn, conflicts)


STORED_RESPONSE_HOURS = "rh"


def _as_stored(before: Contributions, doc: dict[str, object], state: TicketState) -> Contributions:
    """``before`` with the response time the aggregates actually hold for this ticket.

    Under a business calendar the value used is saved in the state document; without one it
    is calendar hours. Diffing against what was stored (not a recomputation with today's
    calendar) keeps kpi_daily/kpi_facts exact when the calendar is enabled or changed.
    """
    stored = doc.get(STORED_RESPONSE_HOURS)
    out = dict(before)
    for key, (_, den) in before.items():
        if key[2] == AVG_RESPONSE_TIME_HOURS:
            hours = stored if isinstance(stored, int | float) else state.response_hours()
            if hours is not None:
                out[key] = (float(hours), den)
    return out


def _with_response_hours(doc: dict[str, object], after: Contributions) -> dict[str, object]:
    for key, (num, _) in after.items():
        if key[2] == AVG_RESPONSE_TIME_HOURS:
            doc[STORED_RESPONSE_HOURS] = num
    return doc


class _Deltas:
    """One transaction's aggregate deltas (per day bucket and per source) and issue changes."""

    __slots__ = ("added", "daily", "facts", "removed")

    def __init__(self) -> None:
        self.daily: dict[tuple[object, ...], tuple[float, int]] = {}
        self.facts: dict[tuple[object, ...], tuple[float, int]] = {}
        self.added: list[tuple[str, str]] = []
        self.removed: list[tuple[str, str]] = []

    def contribute(self, delta: Contributions, source: str) -> None:
        daily = self.daily
        facts = self.facts
        # Inlined _add: this runs for every contribution of every event.
        for key, (num, den) in delta.items():
            old = daily.get(key)
            daily[key] = (num, den) if old is None else (old[0] + num, old[1] + den)
            fact = (key[0], key[2], key[1], source)
            old = facts.get(fact)
            facts[fact] = (num, den) if old is None else (old[0] + num, old[1] + den)

    def issues(self, source: str, before: list[str], after: list[str]) -> None:
        if after != before:
            self.added.extend((source, i) for i in set(after) - set(before))
            self.removed.extend((source, i) for i in set(before) - set(after))

    def settle(self) -> list[str]:
        """Drop deltas that cancelled out; returns the specialists whose buckets still move."""
        self.daily = {k: v for k, v in self.daily.items() if v != (0.0, 0)}
        self.facts = {k: v for k, v in self.facts.items() if v != (0.0, 0)}
        return sorted({str(k[0]) for k in self.daily})

    async def write(self, conn: repository.Raw) -> int:
        """Apply the settled deltas and issue changes; returns how many issues were new."""
        if self.daily:
            await repository.add_daily(conn, self.daily)  # type: ignore[arg-type]
            await repository.add_facts(conn, self.facts)  # type: ignore[arg-type]
        if self.added or self.removed:
            return await repository.set_issues(conn, self.added, self.removed)
        return 0


def _held(
    doc: dict[str, object], state: TicketState, tz: tzinfo, hours_fn: HoursFn | None
) -> tuple[Contributions, list[str]]:
    """What kpi_daily/kpi_facts and the issue list hold for a stored ticket."""
    if not doc:
        # A new ticket contributes nothing and has no issues yet: skip computing that.
        return {}, []
    before, issues = ticket_contributions_and_issues(state, tz, hours_fn)
    if before and (hours_fn is not None or STORED_RESPONSE_HOURS in doc):
        before = _as_stored(before, doc, state)
    return before, issues


def _remeasure(
    deltas: _Deltas,
    source: str,
    state: TicketState,
    held: tuple[Contributions, list[str]],
    tz: tzinfo,
    hours_fn: HoursFn | None,
) -> tuple[Contributions, bool]:
    """Move a ticket's share of the aggregates from ``held`` to what ``state`` gives now.

    Returns the new contributions and whether anything the aggregates hold moved.
    """
    after, issues_after = ticket_contributions_and_issues(state, tz, hours_fn)
    delta = diff_contributions(held[0], after)
    if delta:
        deltas.contribute(delta, source)
    deltas.issues(source, held[1], issues_after)
    return after, bool(delta) or issues_after != held[1]


def _storable(state: TicketState, after: Contributions, hours_fn: HoursFn | None) -> bytes:
    doc = state.to_storable()
    if hours_fn is not None:
        doc = _with_response_hours(doc, after)
    return orjson.dumps(doc)


async def _apply(
    conn: repository.Raw,
    events: list[Event],
    tz: tzinfo,
    result: BatchResult,
    hours_fn: HoursFn | None = None,
    known_specialists: Set[str] = frozenset(),
) -> None:
    deltas = _Deltas()
    contribute = deltas.contribute
    specialists: set[str] = set()

    by_ticket: dict[str, list[Event]] = {}
    by_session: dict[str, list[Event]] = {}
    for event in events:
        who = getattr(event, "specialist_id", None)
        if who is not None:
            specialists.add(who)
        ticket = routes_to_ticket(event)
        if ticket is not None:
            by_ticket.setdefault(ticket, []).append(event)
            continue
        session_id = routes_to_session(event)
        if session_id is not None:
            by_session.setdefault(session_id, []).append(event)
            continue
        contribute(simple_contributions(event, tz), f"event:{event.event_id}")

    if by_ticket:
        docs = await repository.lock_states(conn, *TICKETS, by_ticket)
        saved: dict[str, bytes] = {}
        for ticket_id in sorted(by_ticket):
            doc = docs.get(ticket_id) or {}
            state = TicketState.from_json(doc) if doc else TicketState(ticket_id)
            held = _held(doc, state, tz, hours_fn)
            changed = False
            for event in by_ticket[ticket_id]:
                changed = state.apply_routed(event) or changed
            if not changed:
                continue
            after, _ = _remeasure(deltas, f"ticket:{ticket_id}", state, held, tz, hours_fn)
            saved[ticket_id] = _storable(state, after, hours_fn)
        if saved:
            await repository.save_states(conn, *TICKETS, saved)

    if by_session:
        docs = await repository.lock_states(conn, *SESSIONS, by_session)
        saved = {}
        for session_id in sorted(by_session):
            doc = docs.get(session_id) or {}
            training = TrainingSession.from_json(doc) if doc else TrainingSession(session_id)
            before = training_contributions(training, tz)
            changed = False
            for event in by_session[session_id]:
                changed = training.apply(event) or changed
            if not changed:
                continue
            contribute(
                diff_contributions(before, training_contributions(training, tz)),
                f"session:{session_id}",
            )
            saved[session_id] = orjson.dumps(training.to_storable())
        if saved:
            await repository.save_states(conn, *SESSIONS, saved)

    affected = deltas.settle()
    specialists.update(affected)
    fresh = specialists - known_specialists
    if fresh:
        await repository.ensure_specialists(conn, fresh)
        result.new_specialists = sorted(fresh)
    result.new_issues = await deltas.write(conn)
    for _, issue in deltas.added:
        result.issues_by_kind[issue] = result.issues_by_kind.get(issue, 0) + 1
    if affected:
        await repository.enqueue_scores(conn, affected, "events")
    result.specialists = affected


# -- rescore ---------------------------------------------------------------------------


@dataclass
class RescoreResult:
    """What re-measuring a set of stored tickets did (or would do, in a dry run)."""

    scanned: int = 0
    changed: int = 0
    specialists: list[str] = field(default_factory=list)


async def rescore_tickets(
    conn: repository.Raw,
    ticket_ids: Collection[str],
    tz: tzinfo,
    hours_fn: HoursFn | None,
    *,
    dry_run: bool = False,
) -> RescoreResult:
    """Re-measure stored tickets with today's settings, inside the caller's transaction.

    The engine re-measures a ticket only when an event for it arrives; this moves every
    given ticket's share of kpi_daily/kpi_facts from what they hold (``_held``: the stored
    response hours) to what ``hours_fn`` gives now. The rows are locked in key order
    exactly like the engine, so it is safe while scoring runs. A ticket whose share does not
    move is not written, which makes a second run a no-op. ``dry_run`` counts without
    writing (the caller should still roll back: locking creates rows for unknown ids).
    """
    result = RescoreResult()
    if not ticket_ids:
        return result
    docs = await repository.lock_states(conn, *TICKETS, ticket_ids)
    deltas = _Deltas()
    saved: dict[str, bytes] = {}
    for ticket_id in sorted(docs):
        result.scanned += 1
        doc = docs[ticket_id]
        if not doc:
            continue
        state = TicketState.from_json(doc)
        held = _held(doc, state, tz, hours_fn)
        after, moved = _remeasure(deltas, f"ticket:{ticket_id}", state, held, tz, hours_fn)
        if moved:
            result.changed += 1
            saved[ticket_id] = _storable(state, after, hours_fn)
    result.specialists = deltas.settle()
    if dry_run or not saved:
        return result
    await repository.save_states(conn, *TICKETS, saved)
    await deltas.write(conn)
    if result.specialists:
        await repository.enqueue_scores(conn, result.specialists, "rescore")
    return result


async def stored_ticket_ids(
    conn: repository.Raw, after: str, limit: int, since: datetime | None = None
) -> list[str]:
    """The next ``limit`` ticket ids above ``after`` in key order (keyset paging on the
    primary key), only those whose state was written at or after ``since`` when given.

    updated_at has no index: the filter rides the key-order scan, one pass over the table
    for a whole run instead of a sort per page.
    """
    if since is None:
        rows = await conn.fetch(
            "SELECT ticket_id FROM ticket_states WHERE ticket_id > $1 ORDER BY ticket_id LIMIT $2",
            after,
            limit,
        )
    else:
        rows = await conn.fetch(
            """
            SELECT ticket_id FROM ticket_states WHERE ticket_id > $1 AND updated_at >= $3
            ORDER BY ticket_id LIMIT $2
            """,
            after,
            limit,
            since,
        )
    return [r[0] for r in rows]


async def count_stored_tickets(conn: repository.Raw, since: datetime | None = None) -> int:
    """How many tickets ``stored_ticket_ids`` pages through (for progress reporting)."""
    if since is None:
        return int(await conn.fetchval("SELECT count(*) FROM ticket_states"))
    return int(
        await conn.fetchval("SELECT count(*) FROM ticket_states WHERE updated_at >= $1", since)
    )
