"""Scoring's cheaper state (de)serialisation and contribution paths equal the plain ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scoring.kpi import (
    Closure,
    Feedback,
    Mark,
    TicketState,
    TicketSurvey,
    TrainingSession,
    _marks,
    _rows,
    data_quality_issues,
    routes_to_ticket,
    ticket_contributions,
    ticket_contributions_and_issues,
)
from shared.events import EVENT_ADAPTER, Event
from tests.unit.test_kpi_properties import NY, SH, _fold, histories


class _Stamp(datetime):
    """A datetime subclass: orjson must not be trusted to render it."""


zones = st.one_of(
    st.just(UTC),
    st.sampled_from([ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")]),
    st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))),
    # Sub-minute offsets: never produced from events, but readable from a stored state.
    st.integers(-23 * 3600, 23 * 3600).map(lambda s: timezone(timedelta(seconds=s))),
    st.just(timezone(timedelta(seconds=-1, microseconds=5))),
)
stamps = st.builds(
    lambda d, tz, sub: (_Stamp if sub else datetime).fromisoformat(
        d.replace(tzinfo=tz).isoformat()
    ),
    st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29)),
    zones,
    st.integers(0, 9).map(lambda n: n == 0),
)
ids = st.text(min_size=1, max_size=8)
who = st.one_of(st.none(), ids)


@st.composite
def states(draw: st.DrawFn) -> TicketState:
    marks = st.builds(Mark, ids, stamps, who)
    return TicketState(
        ticket_id=draw(ids),
        created=draw(st.lists(marks, max_size=3)),
        assigned=draw(st.lists(marks, max_size=3)),
        first_response=draw(st.one_of(st.none(), marks)),
        closures=draw(st.lists(st.builds(Closure, ids, stamps, ids, st.booleans()), max_size=3)),
        reopens=draw(st.lists(marks, max_size=2)),
        followed_up=draw(st.booleans()),
        surveys=draw(
            st.lists(
                st.builds(
                    TicketSurvey, ids, st.sampled_from(["csat", "nps"]), stamps, st.integers(0, 10)
                ),
                max_size=3,
            )
        ),
        absorbed=draw(st.sets(ids, max_size=3)),
    )


@settings(max_examples=500, deadline=None)
@given(state=states())
def test_storable_ticket_state_dumps_like_to_json(state: TicketState) -> None:
    assert orjson.dumps(state.to_storable()) == orjson.dumps(state.to_json())


@settings(max_examples=300, deadline=None)
@given(
    session_id=ids,
    feedback=st.lists(st.builds(Feedback, ids, stamps, ids, stamps, st.integers(1, 5)), max_size=4),
)
def test_storable_training_session_dumps_like_to_json(
    session_id: str, feedback: list[Feedback]
) -> None:
    session = TrainingSession(session_id, feedback)
    assert orjson.dumps(session.to_storable()) == orjson.dumps(session.to_json())


def _outcome(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except (ValueError, IndexError, TypeError) as exc:
        return ("error", type(exc), str(exc))


cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    ids,
    st.sampled_from(
        [
            "2026-03-01T09:30:00+08:00",
            "2026-03-01T09:30:00.250000+00:00",
            "2026-03-01T09:30:00Z",
            "2026-03-01T09:30:00",  # naive
            "2026-03-01",
            "not a time",
            "2026-02-30T09:30:00+00:00",
        ]
    ),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=1000, deadline=None)
@given(rows=st.one_of(st.lists(st.lists(cells, max_size=5), max_size=4), cells))
def test_mark_rows_decode_like_from_row(rows: Any) -> None:
    data = {"created": rows}
    assert _outcome(lambda: _marks(data, "created")) == _outcome(
        lambda: [Mark.from_row(r) for r in _rows(data, "created")]
    )


def test_stored_states_of_the_released_format_still_load() -> None:
    # A document as the first release wrote it (isoformat timestamps, v1).
    doc = json.loads(
        """{"v": 1, "ticket_id": "T-1",
        "created": [["e1", "2026-03-01T09:00:00+08:00", "ann"]],
        "assigned": [["e2", "2026-03-01T01:05:00+00:00", "bob"]],
        "first_response": ["e3", "2026-03-01T02:00:00.500000+00:00", "bob"],
        "closed": [["e4", "2026-03-02T02:00:00+00:00", "bob", true]],
        "reopened": [], "followed_up": true,
        "surveys": [["e5", "csat", "2026-03-02T03:00:00+00:00", 5]],
        "absorbed": ["e6"]}"""
    )
    state = TicketState.from_json(doc)
    assert state.created == [Mark("e1", datetime(2026, 3, 1, 1, 0, tzinfo=UTC), "ann")]
    assert state.created[0].occurred_at.utcoffset() == timedelta(hours=8)
    assert state.first_response == Mark(
        "e3", datetime(2026, 3, 1, 2, 0, 0, 500000, tzinfo=UTC), "bob"
    )
    assert state.to_json() == doc
    assert orjson.loads(orjson.dumps(state.to_storable())) == doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    tz=st.sampled_from([NY, SH, UTC]),
    hours_fn=st.sampled_from([None, lambda a, b: (b - a).total_seconds() / 7200.0]),
)
def test_contributions_and_issues_together_equal_apart(
    history: tuple[list[Event], list[Event]], tz: tzinfo, hours_fn: Any
) -> None:
    _, delivery = history
    _, tickets, _ = _fold(delivery, tz, persist=False)
    for state in tickets.values():
        assert ticket_contributions_and_issues(state, tz, hours_fn) == (
            ticket_contributions(state, tz, hours_fn),
            data_quality_issues(state),
        )
        # The routed apply folds exactly like apply.
        routed = TicketState(state.ticket_id)
        checked = TicketState(state.ticket_id)
        for event in delivery:
            if routes_to_ticket(event) == state.ticket_id:
                assert routed.apply_routed(event) == checked.apply(event)
        assert routed.to_json() == checked.to_json() == state.to_json()


def test_routed_apply_still_rejects_foreign_events_through_apply() -> None:
    state = TicketState("T-1")
    other = TicketState("T-2")
    event = EVENT_ADAPTER.validate_python(
        {
            "event_id": "e",
            "type": "ticket.reopened",
            "occurred_at": "2026-03-01T00:00:00Z",
            "ticket_id": "T-2",
        }
    )
    with pytest.raises(ValueError, match="does not update ticket T-1"):
        state.apply(event)
    assert other.apply(event) is True
