"""Scoring use-case: apply one batch of events to state and aggregates in one transaction."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence, Set
from dataclasses import dataclass, field
from datetime import tzinfo

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import kpi, repository
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
    hours_fn: kpi.HoursFn | None = None,
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
    if advance:
        await repository.store_offsets(conn, group_id, advance)
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


def _as_stored(
    before: kpi.Contributions, doc: dict[str, object], state: kpi.TicketState
) -> kpi.Contributions:
    """``before`` with the response time the aggregates actually hold for this ticket.

    Under a business calendar the value used is saved in the state document; without one it
    is calendar hours. Diffing against what was stored (not a recomputation with today's
    calendar) keeps kpi_daily/kpi_facts exact when the calendar is enabled or changed.
    """
    stored = doc.get(STORED_RESPONSE_HOURS)
    out = dict(before)
    for key, (_, den) in before.items():
        if key[2] == kpi.AVG_RESPONSE_TIME_HOURS:
            hours = stored if isinstance(stored, int | float) else state.response_hours()
            if hours is not None:
                out[key] = (float(hours), den)
    return out


def _with_response_hours(doc: dict[str, object], after: kpi.Contributions) -> dict[str, object]:
    for key, (num, _) in after.items():
        if key[2] == kpi.AVG_RESPONSE_TIME_HOURS:
            doc[STORED_RESPONSE_HOURS] = num
    return doc


async def _apply(
    conn: repository.Raw,
    events: list[Event],
    tz: tzinfo,
    result: BatchResult,
    hours_fn: kpi.HoursFn | None = None,
    known_specialists: Set[str] = frozenset(),
) -> None:
    daily: dict[tuple[object, ...], tuple[float, int]] = {}
    facts: dict[tuple[object, ...], tuple[float, int]] = {}
    specialists: set[str] = set()

    def contribute(delta: kpi.Contributions, source: str) -> None:
        # Inlined _add: this runs for every contribution of every event.
        for key, (num, den) in delta.items():
            old = daily.get(key)
            daily[key] = (num, den) if old is None else (old[0] + num, old[1] + den)
            fact = (key[0], key[2], key[1], source)
            old = facts.get(fact)
            facts[fact] = (num, den) if old is None else (old[0] + num, old[1] + den)

    by_ticket: dict[str, list[Event]] = {}
    by_session: dict[str, list[Event]] = {}
    for event in events:
        who = getattr(event, "specialist_id", None)
        if who is not None:
            specialists.add(who)
        ticket = kpi.routes_to_ticket(event)
        if ticket is not None:
            by_ticket.setdefault(ticket, []).append(event)
            continue
        session_id = kpi.routes_to_session(event)
        if session_id is not None:
            by_session.setdefault(session_id, []).append(event)
            continue
        contribute(kpi.simple_contributions(event, tz), f"event:{event.event_id}")

    added: list[tuple[str, str]] = []
    removed: list[tuple[str, str]] = []
    if by_ticket:
        docs = await repository.lock_states(conn, *TICKETS, by_ticket)
        saved: dict[str, bytes] = {}
        for ticket_id in sorted(by_ticket):
            doc = docs.get(ticket_id) or {}
            state = kpi.TicketState.from_json(doc) if doc else kpi.TicketState(ticket_id)
            # A new ticket contributes nothing and has no issues yet: skip computing that.
            before: kpi.Contributions = {}
            issues_before: list[str] = []
            if doc:
                before, issues_before = kpi.ticket_contributions_and_issues(state, tz, hours_fn)
            if before and (hours_fn is not None or STORED_RESPONSE_HOURS in doc):
                before = _as_stored(before, doc, state)
            changed = False
            for event in by_ticket[ticket_id]:
                changed = state.apply_routed(event) or changed
            if not changed:
                continue
            source = f"ticket:{ticket_id}"
            after, issues_after = kpi.ticket_contributions_and_issues(state, tz, hours_fn)
            contribute(kpi.diff_contributions(before, after), source)
            if issues_after != issues_before:
                added.extend((source, i) for i in set(issues_after) - set(issues_before))
                removed.extend((source, i) for i in set(issues_before) - set(issues_after))
            state_doc = state.to_storable()
            if hours_fn is not None:
                state_doc = _with_response_hours(state_doc, after)
            saved[ticket_id] = orjson.dumps(state_doc)
        if saved:
            await repository.save_states(conn, *TICKETS, saved)

    if by_session:
        docs = await repository.lock_states(conn, *SESSIONS, by_session)
        saved = {}
        for session_id in sorted(by_session):
            doc = docs.get(session_id) or {}
            training = (
                kpi.TrainingSession.from_json(doc) if doc else kpi.TrainingSession(session_id)
            )
            before = kpi.training_contributions(training, tz)
            changed = False
            for event in by_session[session_id]:
                changed = training.apply(event) or changed
            if not changed:
                continue
            contribute(
                kpi.diff_contributions(before, kpi.training_contributions(training, tz)),
                f"session:{session_id}",
            )
            saved[session_id] = orjson.dumps(training.to_storable())
        if saved:
            await repository.save_states(conn, *SESSIONS, saved)

    daily = {k: v for k, v in daily.items() if v != (0.0, 0)}
    facts = {k: v for k, v in facts.items() if v != (0.0, 0)}
    affected = sorted({str(k[0]) for k in daily})
    specialists.update(affected)
    fresh = specialists - known_specialists
    if fresh:
        await repository.ensure_specialists(conn, fresh)
        result.new_specialists = sorted(fresh)
    if daily:
        await repository.add_daily(conn, daily)  # type: ignore[arg-type]
        await repository.add_facts(conn, facts)  # type: ignore[arg-type]
    if added or removed:
        result.new_issues = await repository.set_issues(conn, added, removed)
        for _, issue in added:
            result.issues_by_kind[issue] = result.issues_by_kind.get(issue, 0) + 1
    if affected:
        await repository.enqueue_scores(conn, affected, "events")
    result.specialists = affected
