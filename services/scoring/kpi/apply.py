"""Applying events to stored state, without I/O: which documents and aggregate rows change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final, TypeAlias, cast

import orjson

from services.scoring.kpi.breakdown import BROKEN_DOWN, UNKNOWN_CHANNEL, ChannelKey
from services.scoring.kpi.codec import TICKET_STATE_VERSION
from services.scoring.kpi.contributions import (
    NEGATIVE_RESOLUTION_TIME,
    Contributions,
    diff_contributions,
    simple_contributions,
    ticket_contributions_and_issues,
    training_contributions,
)
from services.scoring.kpi.histogram import DISTRIBUTED, BucketKey, bucket_of
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState, routes_to_session, routes_to_ticket
from services.scoring.kpi.training import TrainingSession
from services.scoring.kpi.windows import local_day
from shared.catalogue import (
    AVG_RESPONSE_TIME_HOURS,
    CUSTOMER_SATISFACTION,
    FIRST_RESPONSE_SLA_RATE,
    MEASURE_KEYS,
    NPS,
    RESOLUTION_TIME_HOURS,
)
from shared.events import Event, SurveyCsat, SurveyNps

# A stored state document as parsed JSON; ``{}`` for a ticket or session not stored yet.
Document: TypeAlias = Mapping[str, Any]
# (specialist_id, metric, local date, source): one source's share of a day bucket.
FactKey: TypeAlias = tuple[str, str, date, str]

# What a ticket contributed where today's settings could give another value, kept in its
# document so that diffs subtract exactly what was added: the response ("rh") and resolution
# ("xh") hours under a business calendar, and the first-response SLA bit ("sl", 0 or 1).
STORED_RESPONSE_HOURS = "rh"
STORED_RESOLUTION_HOURS = "xh"
STORED_SLA_MET = "sl"
# Present (= MEASURES_VERSION) when kpi_daily/kpi_facts hold the ticket's SPEC §3a measures;
# documents of earlier releases lack it until their ticket is backfilled or changes.
MEASURES_MARK = "m"
MEASURES_VERSION = 1
# (channel the breakdown holds the ticket's share under, whether the distributions hold it)
Shares: TypeAlias = tuple[str, bool]


class Deltas:
    """One transaction's aggregate deltas (per day bucket, per source, per channel, per time
    bucket) and issue changes."""

    __slots__ = ("added", "buckets", "channels", "daily", "facts", "removed")

    def __init__(self) -> None:
        self.daily: Contributions = {}
        self.facts: dict[FactKey, tuple[float, int]] = {}
        self.channels: dict[ChannelKey, tuple[float, int]] = {}
        self.buckets: dict[BucketKey, int] = {}
        self.added: list[tuple[str, str]] = []
        self.removed: list[tuple[str, str]] = []

    def contribute(
        self, delta: Contributions, source: str, channel: str | None = UNKNOWN_CHANNEL
    ) -> None:
        """Add ``delta`` to the day buckets and the source's facts, and to ``channel``'s
        breakdown (None: the caller moves the breakdown itself, see :meth:`move_channel`)."""
        daily = self.daily
        facts = self.facts
        channels = self.channels
        # Inlined addition: this runs for every contribution of every event.
        for key, (num, den) in delta.items():
            old = daily.get(key)
            daily[key] = (num, den) if old is None else (old[0] + num, old[1] + den)
            fact = (key[0], key[2], key[1], source)
            old = facts.get(fact)
            facts[fact] = (num, den) if old is None else (old[0] + num, old[1] + den)
            if channel is not None and key[2] in BROKEN_DOWN:
                row = (key[0], key[1], key[2], channel)
                old = channels.get(row)
                channels[row] = (num, den) if old is None else (old[0] + num, old[1] + den)

    def move_channel(self, share: Contributions, channel: str, sign: int) -> bool:
        """Add (sign 1) or take away (-1) a whole share under ``channel``; True if any."""
        channels = self.channels
        moved = False
        for (who, day, metric), (num, den) in share.items():
            if metric in BROKEN_DOWN:
                row = (who, day, metric, channel)
                old = channels.get(row, (0.0, 0))
                channels[row] = (old[0] + sign * num, old[1] + sign * den)
                moved = True
        return moved

    def count(self, before: Contributions, after: Contributions) -> bool:
        """Move the time distributions from ``before``'s values to ``after``'s; True if any."""
        old = _bucketed(before)
        new = _bucketed(after)
        if old == new:
            return False
        buckets = self.buckets
        for key, n in new.items():
            buckets[key] = buckets.get(key, 0) + n
        for key, n in old.items():
            buckets[key] = buckets.get(key, 0) - n
        return True

    def issues(self, source: str, before: list[str], after: list[str]) -> None:
        if after != before:
            self.added.extend((source, i) for i in set(after) - set(before))
            self.removed.extend((source, i) for i in set(before) - set(after))

    def settle(self) -> list[str]:
        """Drop deltas that cancelled out; returns the specialists whose buckets still move."""
        self.daily = {k: v for k, v in self.daily.items() if v != (0.0, 0)}
        self.facts = {k: v for k, v in self.facts.items() if v != (0.0, 0)}
        self.channels = {k: v for k, v in self.channels.items() if v != (0.0, 0)}
        self.buckets = {k: v for k, v in self.buckets.items() if v != 0}
        return sorted({k[0] for k in self.daily})


@dataclass
class Routed:
    """A batch's events by what they change: a ticket, a training session or nothing stored."""

    tickets: dict[str, list[Event]] = field(default_factory=dict)
    sessions: dict[str, list[Event]] = field(default_factory=dict)
    plain: list[Event] = field(default_factory=list)
    specialists: set[str] = field(default_factory=set)  # named by an event


@dataclass
class Applied:
    """What applying a batch changes: documents to store, deltas, specialists involved."""

    deltas: Deltas
    tickets: dict[str, bytes]
    sessions: dict[str, bytes]
    specialists: set[str]  # named by an event or with buckets that move
    affected: list[str]  # whose buckets move (their scores must be republished)


def route(events: Iterable[Event]) -> Routed:
    """Group events by the stored state they change (their ticket or training session)."""
    routed = Routed()
    for event in events:
        who = getattr(event, "specialist_id", None)
        if who is not None:
            routed.specialists.add(who)
        ticket = routes_to_ticket(event)
        if ticket is not None:
            routed.tickets.setdefault(ticket, []).append(event)
            continue
        session_id = routes_to_session(event)
        if session_id is not None:
            routed.sessions.setdefault(session_id, []).append(event)
            continue
        routed.plain.append(event)
    return routed


# A survey older than this when it arrives may be a copy of one that the release before
# issue 17 counted on its own (``event:<id>``) and whose id the dedup table has forgotten
# since: ids are kept at least a day (KPI_DEDUP_RETENTION_DAYS >= 1), and an event is not
# seen before it occurs (12 hours are left for a source's clock running fast).
LEGACY_SURVEY_AGE: Final = timedelta(hours=12)


def legacy_survey_facts(
    routed: Routed, measure: Measure, now: datetime
) -> dict[tuple[str, str, date, str], tuple[str, str]]:
    """Where the previous release would have counted the batch's late surveys that name a
    ticket and a specialist: ``(specialist, metric, day, "event:<id>")`` ->
    ``(ticket_id, event_id)``. The caller drops those whose fact exists (already counted)."""
    out: dict[tuple[str, str, date, str], tuple[str, str]] = {}
    before = now - LEGACY_SURVEY_AGE
    for ticket_id, events in routed.tickets.items():
        for event in events:
            # Exact types: isinstance on pydantic models is slow (see ticket.py).
            kind = type(event)
            if kind is not SurveyCsat and kind is not SurveyNps:
                continue
            e = cast(SurveyCsat | SurveyNps, event)
            who = e.specialist_id
            if who is None or e.occurred_at >= before:
                continue
            metric = CUSTOMER_SATISFACTION if kind is SurveyCsat else NPS
            key = (who, metric, local_day(e.occurred_at, measure.tz), f"event:{e.event_id}")
            out[key] = (ticket_id, e.event_id)
    return out


def drop_events(routed: Routed, ticket_events: Iterable[tuple[str, str]]) -> None:
    """Remove the given (ticket_id, event_id) pairs from ``routed`` (already counted)."""
    gone: dict[str, set[str]] = {}
    for ticket_id, event_id in ticket_events:
        gone.setdefault(ticket_id, set()).add(event_id)
    for ticket_id, ids in gone.items():
        routed.tickets[ticket_id] = [e for e in routed.tickets[ticket_id] if e.event_id not in ids]


def apply_events(
    routed: Routed,
    tickets: Mapping[str, Document],
    sessions: Mapping[str, Document],
    measure: Measure,
) -> Applied:
    """Apply ``routed`` to the stored documents of its tickets and sessions (given locked).

    The deltas move each ticket's share of the aggregates from what they hold to what its
    new state gives; a ticket or session that no event changes is not stored again.
    """
    deltas = Deltas()
    tz = measure.tz
    for event in routed.plain:
        deltas.contribute(simple_contributions(event, tz), f"event:{event.event_id}")

    saved_tickets: dict[str, bytes] = {}
    for ticket_id in sorted(routed.tickets):
        doc = tickets.get(ticket_id) or {}
        state = TicketState.from_json(doc) if doc else TicketState(ticket_id)
        held = held_by_ticket(doc, state, measure)
        shares = held_shares(doc, state)
        changed = False
        for event in routed.tickets[ticket_id]:
            changed = state.apply_routed(event) or changed
        if not changed:
            continue
        after, _ = remeasure(deltas, f"ticket:{ticket_id}", state, held, measure, shares)
        saved_tickets[ticket_id] = storable(state, after, measure)

    saved_sessions: dict[str, bytes] = {}
    for session_id in sorted(routed.sessions):
        doc = sessions.get(session_id) or {}
        training = TrainingSession.from_json(doc) if doc else TrainingSession(session_id)
        before = training_contributions(training, tz)
        changed = False
        for event in routed.sessions[session_id]:
            changed = training.apply(event) or changed
        if not changed:
            continue
        deltas.contribute(
            diff_contributions(before, training_contributions(training, tz)),
            f"session:{session_id}",
        )
        saved_sessions[session_id] = orjson.dumps(training.to_storable())

    affected = deltas.settle()
    return Applied(
        deltas, saved_tickets, saved_sessions, routed.specialists | set(affected), affected
    )


@dataclass
class Remeasured:
    """What re-measuring stored tickets with today's measure changes."""

    deltas: Deltas
    tickets: dict[str, bytes]
    scanned: int
    affected: list[str]


def remeasure_tickets(docs: Mapping[str, Document], measure: Measure) -> Remeasured:
    """Move every stored ticket's share of the aggregates to what ``measure`` gives now.

    A ticket whose share does not move is not stored again (a second run changes nothing),
    unless its document lacks the measures mark: it is then stored with it, which also makes
    this the backfill of the SPEC §3a measures for tickets stored by an earlier release.
    """
    deltas = Deltas()
    saved: dict[str, bytes] = {}
    for ticket_id in sorted(docs):
        doc = docs[ticket_id]
        if not doc:
            continue
        state = TicketState.from_json(doc)
        held = held_by_ticket(doc, state, measure)
        after, moved = remeasure(
            deltas, f"ticket:{ticket_id}", state, held, measure, held_shares(doc, state)
        )
        if moved or not has_measures(doc):
            saved[ticket_id] = storable(state, after, measure)
    return Remeasured(deltas, saved, len(docs), deltas.settle())


def has_measures(doc: Document) -> bool:
    """Whether the aggregates hold this stored ticket's SPEC §3a measures."""
    return doc.get(MEASURES_MARK) == MEASURES_VERSION


def held_by_ticket(
    doc: Document, state: TicketState, measure: Measure
) -> tuple[Contributions, list[str]]:
    """What kpi_daily/kpi_facts and the issue list hold for a stored ticket."""
    if not doc:
        # A new ticket contributes nothing and has no issues yet: skip computing that.
        return {}, []
    before, issues = ticket_contributions_and_issues(
        state, measure.tz, measure.hours_fn, measure.sla_hours
    )
    marked = has_measures(doc)
    if not marked:
        # Stored by a release without the §3a measures: it never added them (nor their
        # issue), so the diff must not subtract them; the new state adds them.
        before = {k: v for k, v in before.items() if k[2] not in MEASURE_KEYS}
        if NEGATIVE_RESOLUTION_TIME in issues:
            issues = [i for i in issues if i != NEGATIVE_RESOLUTION_TIME]
    if before and (marked or measure.hours_fn is not None or STORED_RESPONSE_HOURS in doc):
        before = _as_stored(before, doc, state)
    return before, issues


def held_shares(doc: Document, state: TicketState) -> Shares:
    """Where the breakdown and distribution tables hold a stored ticket's share (``state``
    as loaded, before this batch's events).

    A v2/v1 document's share of the breakdown was put under ``unknown`` by migration 0017
    and it has none in the distributions: the first write of the ticket adds it.
    """
    if not doc:
        return UNKNOWN_CHANNEL, True  # holds nothing yet
    return state.channel, doc.get("v") == TICKET_STATE_VERSION


def _bucketed(share: Contributions) -> dict[BucketKey, int]:
    """A ticket's time values as distribution counts (one value per ticket and metric)."""
    out: dict[BucketKey, int] = {}
    for (who, day, metric), (num, den) in share.items():
        if metric in DISTRIBUTED and den > 0:
            key = (who, day, metric, bucket_of(num / den))
            out[key] = out.get(key, 0) + den
    return out


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _as_stored(before: Contributions, doc: Document, state: TicketState) -> Contributions:
    """``before`` with the values the aggregates actually hold for this ticket.

    Under a business calendar the hours used are saved in the state document; without one
    they are calendar hours. The SLA bit is saved whenever the ticket has one. Diffing
    against what was stored (not a recomputation with today's calendar and SLA) keeps
    kpi_daily/kpi_facts exact when the calendar or the SLA is enabled or changed.
    """
    out = dict(before)
    for key, (_, den) in before.items():
        metric = key[2]
        if metric == AVG_RESPONSE_TIME_HOURS:
            hours = _number(doc.get(STORED_RESPONSE_HOURS))
            if hours is None:
                hours = state.response_hours()
            if hours is not None:
                out[key] = (hours, den)
        elif metric == RESOLUTION_TIME_HOURS:
            hours = _number(doc.get(STORED_RESOLUTION_HOURS))
            if hours is None:
                hours = state.resolution_hours()
            if hours is not None:
                out[key] = (hours, den)
        elif metric == FIRST_RESPONSE_SLA_RATE:
            met = _number(doc.get(STORED_SLA_MET))
            if met is not None:
                out[key] = (met, den)
    return out


def remeasure(
    deltas: Deltas,
    source: str,
    state: TicketState,
    held: tuple[Contributions, list[str]],
    measure: Measure,
    shares: Shares = (UNKNOWN_CHANNEL, True),
) -> tuple[Contributions, bool]:
    """Move a ticket's share of the aggregates from ``held`` to what ``state`` gives now.

    ``shares`` says where the channel breakdown and the distributions hold ``held``
    (:func:`held_shares`). Returns the new contributions and whether anything the
    aggregates hold moved.
    """
    after, issues_after = ticket_contributions_and_issues(
        state, measure.tz, measure.hours_fn, measure.sla_hours
    )
    before = held[0]
    delta = diff_contributions(before, after)
    channel_before, counted = shares
    channel = state.channel
    moved = False
    if channel == channel_before:
        if delta:
            deltas.contribute(delta, source, channel)
    else:
        # A late ``ticket.created`` named an earlier channel: the whole share moves.
        if delta:
            deltas.contribute(delta, source, None)
        moved = deltas.move_channel(before, channel_before, -1)
        moved = deltas.move_channel(after, channel, 1) or moved
    # The distributions move only when a time value did (or were never given this ticket).
    if not counted or any(key[2] in DISTRIBUTED for key in delta):
        moved = deltas.count(before if counted else {}, after) or moved
    deltas.issues(source, held[1], issues_after)
    return after, moved or bool(delta) or issues_after != held[1]


def storable(state: TicketState, after: Contributions, measure: Measure) -> bytes:
    """The ticket's state document, marked as holding the §3a measures, with the values it
    contributed that today's settings decide (see STORED_RESPONSE_HOURS)."""
    doc = state.to_storable()
    doc[MEASURES_MARK] = MEASURES_VERSION
    calendar = measure.hours_fn is not None
    for key, (num, _) in after.items():
        metric = key[2]
        if metric == FIRST_RESPONSE_SLA_RATE:
            doc[STORED_SLA_MET] = int(num)
        elif calendar and metric == AVG_RESPONSE_TIME_HOURS:
            doc[STORED_RESPONSE_HOURS] = num
        elif calendar and metric == RESOLUTION_TIME_HOURS:
            doc[STORED_RESOLUTION_HOURS] = num
    return orjson.dumps(doc)
