"""One ticket's export row (GET /v1/tickets), derived from its state by the KPI rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from services.scoring.kpi.marks import Closure
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState, first_created

# What the channel column says while a ticket's state carries no channel.
DEFAULT_SLA_HOURS: Final = 24.0


@dataclass(frozen=True)
class TicketRow:
    """The columns of one exported ticket; None is an empty cell."""

    ticket_id: str
    specialist_id: str | None
    channel: str
    created: datetime | None
    first_response: datetime | None
    closed: datetime | None
    resolved: bool | None
    reopens: int
    response_hours: float | None
    resolution_hours: float | None
    sla_met: bool | None
    followed_up: bool
    csat: int | None
    # Not a column: the instant whose local date the export's from/to range selects on.
    opened: datetime | None


def ticket_row(state: TicketState, measure: Measure) -> TicketRow:
    """The export row of ``state``: a function of its event set, today's measure and SLA."""
    closure = state.counted_closure()
    response = response_hours(state, measure)
    first = state.first_response
    return TicketRow(
        ticket_id=state.ticket_id,
        specialist_id=closure.specialist_id if closure is not None else current_owner(state),
        channel=state.channel,
        created=first_created(state.created) if state.created else None,
        first_response=None if first is None else first.occurred_at,
        closed=None if closure is None else closure.occurred_at,
        resolved=None if closure is None else closure.resolved,
        reopens=len(state.reopens),
        response_hours=response,
        resolution_hours=resolution_hours(state, closure, measure),
        sla_met=sla_met(response, measure.sla_hours),
        followed_up=state.followed_up,
        csat=latest_csat(state),
        opened=opened_at(state),
    )


def current_owner(state: TicketState) -> str | None:
    """The specialist named by the latest ``ticket.created``/``ticket.assigned`` naming one.

    At equal instants an assignment supersedes the creation's assignee (as for surveys).
    """
    best: tuple[datetime, int, str] | None = None
    owner = None
    for rank, marks in ((0, state.created), (1, state.assigned)):
        for m in marks:
            if m.specialist_id is None:
                continue
            key = (m.occurred_at, rank, m.event_id)
            if best is None or key > best:
                best, owner = key, m.specialist_id
    return owner


def response_hours(state: TicketState, measure: Measure) -> float | None:
    """The response time the KPI counts for this ticket (business hours under a calendar);
    None when not counted (unknown, or negative: a data-quality issue)."""
    hours = state.response_hours()
    first = state.first_response
    if hours is None or hours < 0 or first is None or first.specialist_id is None:
        return None
    if measure.hours_fn is not None:
        return 0.0 + measure.hours_fn(first_created(state.created), first.occurred_at)
    return 0.0 + hours


def resolution_hours(state: TicketState, closure: Closure | None, measure: Measure) -> float | None:
    """SPEC §3a ``resolution_time_hours`` for one ticket, as the KPI counts it (business hours
    under a calendar); None without a counted closure or a creation, or closed before it."""
    hours = state.resolution_hours()
    if closure is None or hours is None or hours < 0:
        return None
    if measure.hours_fn is not None:
        return 0.0 + measure.hours_fn(first_created(state.created), closure.occurred_at)
    return 0.0 + hours


def sla_met(response: float | None, sla_hours: float) -> bool | None:
    """SPEC §3a ``first_response_sla_rate`` for one ticket: the counted response came within
    ``KPI_SLA_FIRST_RESPONSE_HOURS`` (inclusive); None without a counted response time."""
    return None if response is None else response <= sla_hours


def latest_csat(state: TicketState) -> int | None:
    """Score of the ticket's latest CSAT survey (by occurred_at, then event id).

    Every survey naming the ticket is kept in its state, also one that names its specialist
    (since issue 17; such surveys counted before it are not kept per ticket).
    """
    latest = None
    for s in state.surveys:
        if s.kind == "csat" and (
            latest is None or (s.occurred_at, s.event_id) > (latest.occurred_at, latest.event_id)
        ):
            latest = s
    return None if latest is None else latest.score


def opened_at(state: TicketState) -> datetime | None:
    """When the ticket was opened: its earliest ``ticket.created``; without one (the event
    never arrived), its earliest assignment, first response, closure or reopen."""
    if state.created:
        return first_created(state.created)
    instants = [m.occurred_at for m in (*state.assigned, *state.reopens)]
    instants += [c.occurred_at for c in state.closures]
    if state.first_response is not None:
        instants.append(state.first_response.occurred_at)
    return min(instants) if instants else None


def opened_on(row: TicketRow, measure: Measure) -> date | None:
    """The local date (KPI_TIMEZONE) the export's from/to range selects the row by."""
    return None if row.opened is None else row.opened.astimezone(measure.tz).date()
