"""Ticket state: the facts of a ticket's events, folded in any order, and who owns what."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from services.scoring.kpi.breakdown import UNKNOWN_CHANNEL, normalise_channel
from services.scoring.kpi.codec import load_ticket, ticket_document, ts_for_orjson
from services.scoring.kpi.marks import BY_ORDER, Closure, Mark, TicketSurvey, iso
from shared.events import (
    Event,
    RecordAudited,
    SurveyCsat,
    SurveyNps,
    SurveyPeerReview,
    SurveyTraining,
    TicketAssigned,
    TicketClosed,
    TicketCreated,
    TicketFirstResponse,
    TicketFollowup,
    TicketReopened,
)

# Exact-type lookups: isinstance on pydantic models goes through ABCMeta and showed up in
# profiles at ~2 calls per event; subclasses (none exist today) still take the slow path.
_TICKET_TYPES: Final[frozenset[type]] = frozenset(
    {
        TicketCreated,
        TicketAssigned,
        TicketFirstResponse,
        TicketClosed,
        TicketReopened,
        TicketFollowup,
    }
)
_TICKET_SURVEY_TYPES: Final[frozenset[type]] = frozenset({SurveyCsat, SurveyNps})
_APPLY_ORDER: Final[tuple[type, ...]] = (
    TicketCreated,
    TicketAssigned,
    TicketFirstResponse,
    TicketClosed,
    TicketReopened,
    TicketFollowup,
    SurveyCsat,
    SurveyNps,
)
_OTHER_TYPES: Final[frozenset[type]] = frozenset({RecordAudited, SurveyPeerReview, SurveyTraining})


def routes_to_ticket(event: Event) -> str | None:
    """The ticket whose state ``event`` updates, or None when it contributes on its own."""
    kind = type(event)
    if kind in _TICKET_TYPES:
        return event.ticket_id  # type: ignore[union-attr]
    if kind in _TICKET_SURVEY_TYPES:
        # Every survey naming a ticket, with or without its own specialist: it takes the
        # ticket's channel, and the ticket state recognises it by id beyond the replay horizon.
        return event.ticket_id  # type: ignore[union-attr]
    if kind in _OTHER_TYPES:
        return None
    if isinstance(
        event,
        TicketCreated
        | TicketAssigned
        | TicketFirstResponse
        | TicketClosed
        | TicketReopened
        | TicketFollowup,
    ):
        return event.ticket_id
    if isinstance(event, SurveyCsat | SurveyNps):
        return event.ticket_id
    return None


def routes_to_session(event: Event) -> str | None:
    """The training session whose state ``event`` updates, if any."""
    return event.session_id if isinstance(event, SurveyTraining) else None


@dataclass
class TicketState:
    """Everything a ticket's events say that KPIs need; a function of the event set only."""

    ticket_id: str
    created: list[Mark] = field(default_factory=list)
    assigned: list[Mark] = field(default_factory=list)
    # Only the earliest first response counts, so later ones are folded into ``absorbed``.
    first_response: Mark | None = None
    closures: list[Closure] = field(default_factory=list)
    reopens: list[Mark] = field(default_factory=list)
    followed_up: bool = False
    surveys: list[TicketSurvey] = field(default_factory=list)
    # (event_id, channel) of the earliest ``ticket.created`` naming a channel (by order).
    named_channel: tuple[str, str] | None = None
    # Ids of events whose effect is already folded into an aggregate (first_response,
    # followed_up): kept so a redelivery is still recognised as a duplicate.
    absorbed: set[str] = field(default_factory=set)

    def event_ids(self) -> set[str]:
        ids = set(self.absorbed)
        ids.update(m.event_id for m in self.created)
        ids.update(m.event_id for m in self.assigned)
        ids.update(c.event_id for c in self.closures)
        ids.update(m.event_id for m in self.reopens)
        ids.update(s.event_id for s in self.surveys)
        if self.first_response is not None:
            ids.add(self.first_response.event_id)
        return ids

    def _knows(self, event_id: str) -> bool:
        """``event_id in self.event_ids()`` without building the set (hot path of apply)."""
        if event_id in self.absorbed:
            return True
        if self.first_response is not None and self.first_response.event_id == event_id:
            return True
        for rows in (self.created, self.assigned, self.closures, self.reopens, self.surveys):
            for row in rows:
                if row.event_id == event_id:
                    return True
        return False

    def apply(self, event: Event) -> bool:
        """Fold ``event`` in; False (and no change) when its event_id is already known."""
        ticket_id = routes_to_ticket(event)
        if ticket_id != self.ticket_id:
            raise ValueError(
                f"event {event.event_id} ({event.type}) does not update ticket {self.ticket_id}"
            )
        return self.apply_routed(event)

    def apply_routed(self, event: Event) -> bool:
        """:meth:`apply` for an event the caller routed here with :func:`routes_to_ticket`."""
        if self._knows(event.event_id):
            return False
        at = event.occurred_at
        kind: type = type(event)
        if kind not in _TICKET_TYPES and kind not in _TICKET_SURVEY_TYPES:
            kind = next((k for k in _APPLY_ORDER if isinstance(event, k)), kind)
        # Narrowed by the exact-type dispatch (mypy cannot see through ``kind is X``).
        e: Any = event
        if kind is TicketCreated:
            self.created.append(Mark(e.event_id, at, e.specialist_id))
            if e.channel is not None:
                self._name_channel(e.event_id, at, e.channel)
        elif kind is TicketAssigned:
            self.assigned.append(Mark(e.event_id, at, e.specialist_id))
        elif kind is TicketFirstResponse:
            mark = Mark(e.event_id, at, e.specialist_id)
            current = self.first_response
            if current is None or mark.order < current.order:
                if current is not None:
                    self.absorbed.add(current.event_id)
                self.first_response = mark
            else:
                self.absorbed.add(mark.event_id)
        elif kind is TicketClosed:
            self.closures.append(Closure(e.event_id, at, e.specialist_id, e.resolved))
        elif kind is TicketReopened:
            self.reopens.append(Mark(e.event_id, at))
        elif kind is TicketFollowup:
            self.followed_up = True
            self.absorbed.add(e.event_id)
        elif kind is SurveyCsat:
            self.surveys.append(TicketSurvey(e.event_id, "csat", at, e.score, e.specialist_id))
        elif kind is SurveyNps:
            self.surveys.append(TicketSurvey(e.event_id, "nps", at, e.score, e.specialist_id))
        else:  # pragma: no cover - routes_to_ticket already limits the types
            raise ValueError(f"event type {event.type} does not update a ticket")
        return True

    def _name_channel(self, event_id: str, at: datetime, raw: str) -> None:
        """Keep the channel of the earliest creation naming one, whatever the arrival order."""
        channel = normalise_channel(raw)
        if channel is None:
            return
        current = self.named_channel
        if current is not None:
            mark = next((m for m in self.created if m.event_id == current[0]), None)
            if mark is not None and mark.order <= (at, event_id):
                return
        self.named_channel = (event_id, channel)

    @property
    def channel(self) -> str:
        """The ticket's channel: of its earliest ``ticket.created`` naming one, else unknown."""
        named = self.named_channel
        return UNKNOWN_CHANNEL if named is None else named[1]

    def to_json(self) -> dict[str, Any]:
        """Compact JSON-safe form (v3, see :mod:`.codec`); equal states serialise equally."""
        return ticket_document(self, iso)

    def to_storable(self) -> dict[str, Any]:
        """:meth:`to_json` with timestamps that ``orjson.dumps`` renders to the same bytes."""
        return ticket_document(self, ts_for_orjson)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TicketState:
        """Inverse of :meth:`to_json`, also reading v1 documents; ValueError when malformed."""
        return load_ticket(cls(""), data)

    # -- derived facts, all functions of the event set ------------------------------------

    def counted_closure(self) -> Closure | None:
        """The latest closure when no reopen happened strictly after it."""
        closures = self.closures
        if not closures:
            return None
        # Computed for every ticket before and after each batch: skip max() and the
        # generator in the common case of one closure and no reopen.
        latest = closures[0] if len(closures) == 1 else max(closures, key=BY_ORDER)
        if self.reopens:
            at = latest.occurred_at
            for reopen in self.reopens:
                if reopen.occurred_at > at:
                    return None
        return latest

    def response_hours(self) -> float | None:
        """First response minus earliest creation, in hours (may be negative); None if unknown."""
        created = self.created
        if self.first_response is None or not created:
            return None
        delta = self.first_response.occurred_at - first_created(created)
        return delta.total_seconds() / 3600.0

    def resolution_hours(self) -> float | None:
        """Counted closure minus earliest creation, in hours (may be negative); None if unknown."""
        created = self.created
        if not created:
            return None
        closure = self.counted_closure()
        if closure is None:
            return None
        return (closure.occurred_at - first_created(created)).total_seconds() / 3600.0

    def reopened_before_closure(self) -> bool:
        """A reopen strictly before the counted closure (False without a counted closure)."""
        closure = self.counted_closure()
        if closure is None:
            return False
        at = closure.occurred_at
        return any(r.occurred_at < at for r in self.reopens)

    def survey_specialist(self, at: datetime) -> str | None:
        """Who a ticket-only survey taken at ``at`` rates (SPEC §3); None while unknown."""
        # Loops rather than lists + max(key=...): this runs per survey on every recompute.
        # Strict comparisons keep the first of equal candidates, as max()/min() do.
        closed: Closure | None = None
        for c in self.closures:
            if c.occurred_at <= at and (
                closed is None
                or (c.occurred_at, c.event_id) > (closed.occurred_at, closed.event_id)
            ):
                closed = c
        if closed is not None:
            return closed.specialist_id
        # At equal instants an assignment supersedes the creation's assignee, hence the rank.
        latest: tuple[datetime, int, str] | None = None  # among owners from before ``at``
        earliest: tuple[datetime, int, str] | None = None  # among all owners
        chosen = chosen_early = None
        for rank_of, marks in ((0, self.created), (1, self.assigned)):
            for m in marks:
                who = m.specialist_id
                if who is None:
                    continue
                rank = (m.occurred_at, rank_of, m.event_id)
                if m.occurred_at <= at:
                    if latest is None or rank > latest:
                        latest, chosen = rank, who
                elif earliest is None or rank < earliest:
                    earliest, chosen_early = rank, who
        # With no owner at or before ``at``, the earliest later one is the earliest of all.
        return chosen if latest is not None else chosen_early


def first_created(created: list[Mark]) -> datetime:
    """``min(m.occurred_at for m in created)`` (first of equal instants), without a generator."""
    first = created[0].occurred_at
    for m in created:
        if m.occurred_at < first:
            first = m.occurred_at
    return first


def held_surveys(state: TicketState) -> list[TicketSurvey]:
    """Ticket-only surveys whose specialist cannot be known yet."""
    return [
        s
        for s in state.surveys
        if s.specialist_id is None and state.survey_specialist(s.occurred_at) is None
    ]
