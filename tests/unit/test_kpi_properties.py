"""Property tests: incremental, order-independent scoring equals the plain reference model."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scoring.kpi.contributions import (
    Contributions,
    diff_contributions,
    merge_contributions,
    simple_contributions,
    ticket_contributions,
    training_contributions,
)
from services.scoring.kpi.ticket import TicketState, routes_to_session, routes_to_ticket
from services.scoring.kpi.training import TrainingSession
from services.scoring.kpi.windows import parse_window
from shared.catalogue import AVG_RESPONSE_TIME_HOURS, KPI_KEYS, RESOLUTION_TIME_HOURS
from shared.events import EVENT_ADAPTER, Event
from tests.reference import reference_sums, reference_window

NY = ZoneInfo("America/New_York")
SH = ZoneInfo("Asia/Shanghai")
SPECIALISTS = ("ann", "bob", "cy")


def _local(
    tz: ZoneInfo, y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0, ms: int = 0
) -> datetime:
    return datetime(y, m, d, hh, mm, ss, ms * 1000, tzinfo=tz).astimezone(UTC)


def _anchors() -> list[datetime]:
    """UTC instants that are hard for day bucketing: DST changes, local midnights, quarter ends."""
    out: list[datetime] = []
    for tz in (NY, SH):
        for y, m, d in ((2025, 12, 31), (2026, 3, 31), (2026, 6, 30), (2026, 9, 30)):
            out.append(_local(tz, y, m, d, 23, 59, 59, 999))
            nxt = date(y, m, d) + timedelta(days=1)
            out.append(_local(tz, nxt.year, nxt.month, nxt.day))
    # New York DST: spring forward 2026-03-08 02:00 EST, fall back 2026-11-01 02:00 EDT.
    out += [
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT, the first instant after the gap
        datetime(2026, 3, 8, 4, 59, 59, 999000, tzinfo=UTC),  # 23:59:59.999 EST on 03-07
        datetime(2026, 3, 8, 5, 0, tzinfo=UTC),  # 00:00 local 03-08
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT (first pass)
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # 01:30 EST (second pass)
        datetime(2026, 11, 2, 4, 59, 59, 999000, tzinfo=UTC),  # 23:59:59.999 EST on 11-01
    ]
    return out


ANCHORS = _anchors()
# Small deltas make equal timestamps common (tie-breaking) and cross midnights often.
DELTAS = st.one_of(
    st.sampled_from([0, 0, 0, 1, -1, 3600_000, -3600_000, 86_400_000, -86_400_000]),
    st.integers(min_value=-3 * 86_400, max_value=3 * 86_400).map(lambda s: s * 1000),
)
OFFSETS = [
    timedelta(0),
    timedelta(hours=8),
    timedelta(hours=-5),
    timedelta(hours=-4),
    timedelta(hours=5, minutes=45),
]


@st.composite
def utc_instants(draw: st.DrawFn) -> datetime:
    """A UTC instant near a hard anchor."""
    return draw(st.sampled_from(ANCHORS)) + timedelta(milliseconds=draw(DELTAS))


@st.composite
def instants(draw: st.DrawFn, pool: list[datetime]) -> str:
    """RFC 3339 text with an arbitrary UTC offset; mostly from a small per-history pool so
    that equal instants (tie-breaking, reopen at the closure's instant) are common."""
    base = draw(st.sampled_from(pool)) if draw(st.integers(0, 3)) else draw(utc_instants())
    offset = draw(st.sampled_from(OFFSETS))
    return base.astimezone(timezone(offset)).isoformat()


specialists = st.sampled_from(SPECIALISTS)
maybe_specialist = st.one_of(st.none(), specialists)


# Per kind: how many events of that kind one ticket may get. Several creations, first
# responses and closure/reopen chains per ticket exercise the earliest/latest rules.
TICKET_KIND_MAX = {
    "ticket.created": 2,
    "ticket.assigned": 2,
    "ticket.first_response": 3,
    "ticket.closed": 3,
    "ticket.reopened": 2,
    "ticket.followup": 1,
    "csat": 2,
    "nps": 2,
    "csat_direct": 1,
    "nps_direct": 1,
}


@st.composite
def ticket_history(draw: st.DrawFn, ticket_id: str, pool: list[datetime]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind, most in TICKET_KIND_MAX.items():
        for _ in range(draw(st.integers(0, most))):
            out.append(draw(ticket_event(ticket_id, pool, kind)))
    return out


@st.composite
def ticket_event(
    draw: st.DrawFn, ticket_id: str, pool: list[datetime], kind: str
) -> dict[str, Any]:
    at = draw(instants(pool))
    base: dict[str, Any] = {"occurred_at": at, "ticket_id": ticket_id}
    if kind == "ticket.created":
        return {**base, "type": kind, "specialist_id": draw(maybe_specialist), "channel": "web"}
    if kind in ("ticket.assigned", "ticket.first_response", "ticket.followup"):
        return {**base, "type": kind, "specialist_id": draw(specialists)}
    if kind == "ticket.closed":
        return {
            **base,
            "type": kind,
            "specialist_id": draw(specialists),
            "resolved": draw(st.booleans()),
        }
    if kind == "ticket.reopened":
        return {**base, "type": kind}
    if kind.startswith("csat"):
        survey: dict[str, Any] = {**base, "type": "survey.csat", "score": draw(st.integers(1, 5))}
    else:
        survey = {**base, "type": "survey.nps", "score": draw(st.integers(0, 10))}
    if kind.endswith("_direct"):
        survey["specialist_id"] = draw(specialists)
        if draw(st.booleans()):
            del survey["ticket_id"]
    return survey


@st.composite
def other_event(draw: st.DrawFn, pool: list[datetime]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["record.audited", "survey.peer_review", "survey.training"]))
    at = draw(instants(pool))
    if kind == "record.audited":
        out = {
            "type": kind,
            "occurred_at": at,
            "specialist_id": draw(specialists),
            "accurate": draw(st.booleans()),
        }
        if draw(st.booleans()):
            out["ticket_id"] = "T0"
        return out
    if kind == "survey.peer_review":
        return {
            "type": kind,
            "occurred_at": at,
            "specialist_id": draw(specialists),
            "reviewer_id": draw(specialists),
            "score": draw(st.integers(1, 5)),
        }
    return {
        "type": kind,
        "occurred_at": at,
        "session_id": draw(st.sampled_from(["S0", "S1", "S2"])),
        "specialist_id": draw(specialists),
        "session_at": draw(instants(pool)),
        "score": draw(st.integers(3, 5)),
    }


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """(unique events, the same events delivered shuffled with redeliveries)."""
    pool = draw(st.lists(utc_instants(), min_size=1, max_size=5))
    raw: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 4))):
        raw += draw(ticket_history(f"T{i}", pool))
    raw += draw(st.lists(other_event(pool), max_size=8))
    # Random id ranks so that tie-breaking by event_id is unrelated to generation order.
    ranks = draw(st.permutations(range(len(raw))))
    events = [
        EVENT_ADAPTER.validate_python({**item, "event_id": f"ev-{ranks[i]:03d}"})
        for i, item in enumerate(raw)
    ]
    dups = draw(st.lists(st.sampled_from(events), max_size=6)) if events else []
    delivery = draw(st.permutations(events + dups))
    return events, list(delivery)


def half_hours(start: datetime, end: datetime) -> float:
    """A stand-in business calendar: half of every hour counts."""
    return (end - start).total_seconds() / 7200.0


def _fold(
    delivery: list[Event],
    tz: tzinfo,
    persist: bool,
    hours_fn: Any = None,
    sla: float = 24.0,
) -> tuple[Contributions, dict[str, TicketState], dict[str, TrainingSession]]:
    """Incremental scoring as the service does it: per-entity state, deltas into buckets."""
    sums: Contributions = {}
    tickets: dict[str, TicketState] = {}
    sessions: dict[str, TrainingSession] = {}
    seen_simple: set[str] = set()
    for event in delivery:
        ticket_id = routes_to_ticket(event)
        session_id = routes_to_session(event)
        if ticket_id is not None:
            state = tickets.get(ticket_id) or TicketState(ticket_id)
            before = ticket_contributions(state, tz, hours_fn, sla)
            if state.apply(event):
                merge_contributions(
                    sums, diff_contributions(before, ticket_contributions(state, tz, hours_fn, sla))
                )
            # Persisting through JSON between events must not change anything.
            tickets[ticket_id] = (
                TicketState.from_json(json.loads(json.dumps(state.to_json()))) if persist else state
            )
        elif session_id is not None:
            session = sessions.get(session_id) or TrainingSession(session_id)
            before = training_contributions(session, tz)
            if session.apply(event):
                merge_contributions(
                    sums, diff_contributions(before, training_contributions(session, tz))
                )
            sessions[session_id] = (
                TrainingSession.from_json(json.loads(json.dumps(session.to_json())))
                if persist
                else session
            )
        else:
            # Simple events have no state; the database's event_id dedup stands in here.
            if event.event_id in seen_simple:
                continue
            seen_simple.add(event.event_id)
            merge_contributions(sums, simple_contributions(event, tz))
    return sums, tickets, sessions


def _assert_same(got: Contributions, want: dict[Any, tuple[float, int]]) -> None:
    assert set(got) == set(want), (sorted(set(got) ^ set(want)), got, want)
    for key, (num, den) in want.items():
        got_num, got_den = got[key]
        assert got_den == den, (key, got[key], want[key])
        if key[2] in (AVG_RESPONSE_TIME_HOURS, RESOLUTION_TIME_HOURS):
            assert math.isclose(got_num, num, rel_tol=1e-9, abs_tol=1e-9), (key, got_num, num)
        else:
            assert got_num == num, (key, got_num, num)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    tz=st.sampled_from([NY, SH]),
    persist=st.booleans(),
    hours_fn=st.sampled_from([None, half_hours]),
    # SLA lines at the generator's typical gaps (0, 1 h, a day), so ties on the line occur.
    sla=st.sampled_from([24.0, 1.0, 0.5, 48.0]),
)
def test_incremental_folding_equals_reference(
    history: tuple[list[Event], list[Event]],
    tz: ZoneInfo,
    persist: bool,
    hours_fn: Any,
    sla: float,
) -> None:
    events, delivery = history
    sums, tickets, sessions = _fold(delivery, tz, persist, hours_fn, sla)
    _assert_same(sums, reference_sums(delivery, tz, hours_fn, sla))

    # Final states do not depend on arrival order.
    in_order = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    _, tickets2, sessions2 = _fold(in_order, tz, persist=False)
    assert {k: v.to_json() for k, v in tickets.items()} == {
        k: v.to_json() for k, v in tickets2.items()
    }
    assert {k: v.to_json() for k, v in sessions.items()} == {
        k: v.to_json() for k, v in sessions2.items()
    }

    # Any window is a sum of day buckets.
    days = sorted({key[1] for key in sums}) or [date(2026, 4, 1)]
    for as_of in {days[0], days[-1], days[len(days) // 2], date(2026, 3, 31), date(2026, 4, 1)}:
        quarter = f"{as_of.year}Q{(as_of.month - 1) // 3 + 1}"
        for name in ("7d", "30d", "qtd", quarter):
            window = parse_window(name, as_of)
            for who in SPECIALISTS:
                bucketed = {m: (0.0, 0) for m in KPI_KEYS}
                for (spec, day, metric), (num, den) in sums.items():
                    if spec == who and window.contains(day):
                        old_num, old_den = bucketed[metric]
                        bucketed[metric] = (old_num + num, old_den + den)
                want = reference_window(delivery, tz, who, window, hours_fn, sla)
                assert set(want) == set(bucketed)
                for metric, (num, den) in want.items():
                    got_num, got_den = bucketed[metric]
                    assert got_den == den, (name, as_of, who, metric)
                    assert math.isclose(got_num, num, rel_tol=1e-9, abs_tol=1e-9), (
                        name,
                        as_of,
                        who,
                        metric,
                    )


@settings(max_examples=100, deadline=None)
@given(history=histories(), tz=st.sampled_from([NY, SH, UTC]))
def test_states_round_trip_through_json(
    history: tuple[list[Event], list[Event]], tz: tzinfo
) -> None:
    _, delivery = history
    _, tickets, sessions = _fold(delivery, tz, persist=False)
    for state in tickets.values():
        doc = json.loads(json.dumps(state.to_json()))
        again = TicketState.from_json(doc)
        assert again.to_json() == doc
        assert ticket_contributions(again, tz) == ticket_contributions(state, tz)
    for session in sessions.values():
        doc = json.loads(json.dumps(session.to_json()))
        assert TrainingSession.from_json(doc).to_json() == doc
