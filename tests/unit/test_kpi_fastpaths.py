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

from services.scoring.kpi.codec import _marks, _rows
from services.scoring.kpi.contributions import (
    data_quality_issues,
    diff_contributions,
    ticket_contributions,
    ticket_contributions_and_issues,
)
from services.scoring.kpi.marks import Closure, Feedback, Mark, TicketSurvey
from services.scoring.kpi.ticket import TicketState, routes_to_ticket
from services.scoring.kpi.training import TrainingSession
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
    # Rewritten in the compact v3 form (v2 + channel), keeping every timestamp's offset.
    v3 = {
        "v": 3,
        "t": "T-1",
        "c": [["e1", "2026-03-01T09:00:00+08:00", "ann"]],
        "a": [["e2", "2026-03-01T01:05:00+00:00", "bob"]],
        "f": ["e3", "2026-03-01T02:00:00.500000+00:00", "bob"],
        "x": [["e4", "2026-03-02T02:00:00+00:00", "bob", True]],
        "u": True,
        "s": [["e5", "csat", "2026-03-02T03:00:00+00:00", 5]],
        "b": ["e6"],
    }
    assert state.to_json() == v3
    assert orjson.loads(orjson.dumps(state.to_storable())) == v3
    assert TicketState.from_json(v3) == state
    assert TicketState.from_json(v3).created[0].occurred_at.utcoffset() == timedelta(hours=8)
    # A v2 document (the release before issue 17) is the same state, channel unknown.
    assert TicketState.from_json({**v3, "v": 2}) == state
    assert TicketState.from_json({**v3, "v": 2}).channel == "unknown"
    # A released document with nulls/empties and extra keys (the handler's "rh").
    bare = {
        "v": 1,
        "ticket_id": "T-2",
        "created": [["e1", "2026-03-01T09:00:00-05:00", None]],
        "assigned": [],
        "first_response": None,
        "closed": [],
        "reopened": [["e2", "2026-03-01T10:00:00+00:00", None]],
        "followed_up": False,
        "surveys": [],
        "absorbed": [],
        "rh": 1.5,
    }
    bare_state = TicketState.from_json(bare)
    assert bare_state == TicketState(
        "T-2",
        created=[Mark("e1", datetime(2026, 3, 1, 14, tzinfo=UTC))],
        reopens=[Mark("e2", datetime(2026, 3, 1, 10, tzinfo=UTC))],
    )
    assert bare_state.to_json() == {
        "v": 3,
        "t": "T-2",
        "c": [["e1", "2026-03-01T09:00:00-05:00"]],
        "o": [["e2", "2026-03-01T10:00:00+00:00"]],
    }


def _v1_doc(state: TicketState) -> dict[str, Any]:
    """The first release's serialiser, kept as the reference for reading old documents."""

    def rows(marks: list[Mark]) -> list[list[Any]]:
        ordered = sorted(marks, key=lambda m: (m.occurred_at, m.event_id))
        return [[m.event_id, m.occurred_at.isoformat(), m.specialist_id] for m in ordered]

    first = state.first_response
    return {
        "v": 1,
        "ticket_id": state.ticket_id,
        "created": rows(state.created),
        "assigned": rows(state.assigned),
        "first_response": None
        if first is None
        else [first.event_id, first.occurred_at.isoformat(), first.specialist_id],
        "closed": [
            [c.event_id, c.occurred_at.isoformat(), c.specialist_id, c.resolved]
            for c in sorted(state.closures, key=lambda c: (c.occurred_at, c.event_id))
        ],
        "reopened": rows(state.reopens),
        "followed_up": state.followed_up,
        "surveys": [
            [s.event_id, s.kind, s.occurred_at.isoformat(), s.score]
            for s in sorted(state.surveys, key=lambda s: (s.occurred_at, s.event_id))
        ],
        "absorbed": sorted(state.absorbed),
    }


def _stamps_of(state: TicketState) -> list[str]:
    marks: list[Any] = [*state.created, *state.assigned, *state.closures, *state.reopens]
    marks += state.surveys
    if state.first_response is not None:
        marks.append(state.first_response)
    return sorted(f"{m.event_id} {m.occurred_at.isoformat()}" for m in marks)


@settings(max_examples=500, deadline=None)
@given(state=states())
def test_v1_and_v2_documents_load_to_the_same_state(state: TicketState) -> None:
    old = TicketState.from_json(json.loads(json.dumps(_v1_doc(state))))
    new = TicketState.from_json(orjson.loads(orjson.dumps(state.to_storable())))
    assert old == new
    # Exact round trip: the same instants with the same offsets, and the same document.
    assert _stamps_of(old) == _stamps_of(new) == _stamps_of(state)
    assert old.to_json() == new.to_json() == state.to_json()
    assert old.event_ids() == new.event_ids() == state.event_ids()


v2_fields = st.fixed_dictionaries(
    {},
    optional={
        "t": st.one_of(ids, cells),
        "c": st.one_of(st.lists(st.lists(cells, max_size=5), max_size=3), cells),
        "f": st.one_of(st.lists(cells, max_size=5), cells),
        "x": st.one_of(st.lists(st.lists(cells, max_size=5), max_size=3), cells),
        "s": st.one_of(st.lists(st.lists(cells, max_size=5), max_size=3), cells),
        "u": cells,
        "b": st.one_of(st.lists(cells, max_size=3), cells),
    },
)


@settings(max_examples=1000, deadline=None)
@given(fields=v2_fields)
def test_malformed_v2_documents_raise_value_error_only(fields: dict[str, Any]) -> None:
    doc = {"v": 2, **fields}
    outcome = _outcome(lambda: TicketState.from_json(doc))
    assert outcome[0] == "ok" or outcome[1] is ValueError
    if outcome[0] == "ok":
        # Whatever loads is written back in a form that loads to the same state.
        assert TicketState.from_json(outcome[1].to_json()) == outcome[1]


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


def _reference_diff(
    old: dict[Any, tuple[float, int]], new: dict[Any, tuple[float, int]]
) -> dict[Any, tuple[float, int]]:
    out = {}
    for key in old.keys() | new.keys():
        old_num, old_den = old.get(key, (0.0, 0))
        new_num, new_den = new.get(key, (0.0, 0))
        if new_num != old_num or new_den != old_den:
            out[key] = (new_num - old_num, new_den - old_den)
    return out


sides = st.dictionaries(
    st.sampled_from("abcdef"),
    st.tuples(
        st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5]), st.floats(-1e6, 1e6)),
        st.integers(-2, 3),
    ),
    max_size=6,
)


@settings(max_examples=1000, deadline=None)
@given(old=sides, new=sides)
def test_diff_contributions_equals_the_plain_diff(
    old: dict[Any, tuple[float, int]], new: dict[Any, tuple[float, int]]
) -> None:
    got = diff_contributions(old, new)
    want = _reference_diff(old, new)
    assert got.keys() == want.keys()
    for key, (num, den) in want.items():
        # Bit-identical floats (sign of zero included): aggregates add exactly these.
        assert den == got[key][1] and repr(num) == repr(got[key][0])


def _reference_contributions(
    state: TicketState, tz: tzinfo, hours_fn: Any
) -> dict[Any, tuple[float, int]]:
    """The first release's ticket_contributions, written plainly (lists, max/min with keys),
    with the SPEC §3a measures."""
    out: dict[Any, tuple[float, int]] = {}

    def add(key: Any, num: float) -> None:
        old_num, old_den = out.get(key, (0.0, 0))
        out[key] = (old_num + num, old_den + 1)

    def specialist(at: datetime) -> str | None:
        closed_before = [c for c in state.closures if c.occurred_at <= at]
        if closed_before:
            return max(closed_before, key=lambda c: (c.occurred_at, c.event_id)).specialist_id
        owners = [(m, 0) for m in state.created if m.specialist_id is not None]
        owners += [(m, 1) for m in state.assigned if m.specialist_id is not None]
        if not owners:
            return None

        def rank(item: tuple[Mark, int]) -> tuple[datetime, int, str]:
            return (item[0].occurred_at, item[1], item[0].event_id)

        before = [o for o in owners if o[0].occurred_at <= at]
        chosen = max(before, key=rank) if before else min(owners, key=rank)
        return chosen[0].specialist_id

    if state.closures:
        latest = max(state.closures, key=lambda c: (c.occurred_at, c.event_id))
        if not any(r.occurred_at > latest.occurred_at for r in state.reopens):
            day = latest.occurred_at.astimezone(tz).date()
            add((latest.specialist_id, day, "resolution_rate"), 1.0 if latest.resolved else 0.0)
            if latest.resolved:
                add((latest.specialist_id, day, "followup_rate"), float(state.followed_up))
            reopened = any(r.occurred_at < latest.occurred_at for r in state.reopens)
            add((latest.specialist_id, day, "reopen_rate"), float(reopened))
            if state.created:
                created_at = min(m.occurred_at for m in state.created)
                hours = (latest.occurred_at - created_at).total_seconds() / 3600.0
                if hours >= 0:
                    if hours_fn is not None:
                        hours = hours_fn(created_at, latest.occurred_at)
                    add((latest.specialist_id, day, "resolution_time_hours"), hours)
    first = state.first_response
    if first is not None and state.created and first.specialist_id is not None:
        created_at = min(m.occurred_at for m in state.created)
        hours = (first.occurred_at - created_at).total_seconds() / 3600.0
        if hours >= 0:
            if hours_fn is not None:
                hours = hours_fn(created_at, first.occurred_at)
            day = first.occurred_at.astimezone(tz).date()
            add((first.specialist_id, day, AVG), hours)
            add((first.specialist_id, day, "first_response_sla_rate"), float(hours <= 24.0))
    for survey in state.surveys:
        who = specialist(survey.occurred_at)
        if who is not None:
            day = survey.occurred_at.astimezone(tz).date()
            if survey.kind == "csat":
                add((who, day, "customer_satisfaction"), 1.0 if survey.score >= 4 else 0.0)
            else:
                point = 1.0 if survey.score >= 9 else (-1.0 if survey.score <= 6 else 0.0)
                add((who, day, "nps"), point)
    return out


AVG = "avg_response_time_hours"
# Few instants (two offsets each) and few ids: ties on time, rank and id are common.
_BASE = datetime(2026, 3, 7, 23, 30, tzinfo=UTC)
tie_stamps = st.builds(
    lambda hours, tz: (_BASE + timedelta(hours=hours)).astimezone(tz),
    st.integers(0, 4),
    st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
)
tie_ids = st.sampled_from(["e1", "e2", "e3"])
tie_who = st.one_of(st.none(), st.sampled_from(["ann", "bob", "cy"]))


@st.composite
def tie_states(draw: st.DrawFn) -> TicketState:
    marks = st.builds(Mark, tie_ids, tie_stamps, tie_who)
    return TicketState(
        ticket_id="T",
        created=draw(st.lists(marks, max_size=3)),
        assigned=draw(st.lists(marks, max_size=3)),
        first_response=draw(st.one_of(st.none(), marks)),
        closures=draw(
            st.lists(
                st.builds(
                    Closure, tie_ids, tie_stamps, st.sampled_from(["ann", "bob"]), st.booleans()
                ),
                max_size=3,
            )
        ),
        reopens=draw(st.lists(st.builds(Mark, tie_ids, tie_stamps), max_size=2)),
        followed_up=draw(st.booleans()),
        surveys=draw(
            st.lists(
                st.builds(
                    TicketSurvey,
                    tie_ids,
                    st.sampled_from(["csat", "nps"]),
                    tie_stamps,
                    st.integers(0, 10),
                ),
                max_size=3,
            )
        ),
    )


@settings(max_examples=1500, deadline=None)
@given(
    state=st.one_of(tie_states(), states()),
    tz=st.sampled_from([UTC, NY, SH]),
    hours_fn=st.sampled_from(
        [None, lambda a, b: (b - a).total_seconds() / 7200.0 + a.utcoffset().total_seconds()]
    ),
)
def test_ticket_contributions_equal_the_plain_reference(
    state: TicketState, tz: tzinfo, hours_fn: Any
) -> None:
    try:
        want: Any = _reference_contributions(state, tz, hours_fn)
    except OverflowError:  # a far-off stamp converted past year 1 or 9999
        return
    got = ticket_contributions(state, tz, hours_fn)
    assert got == want
    # Same floats bit for bit (sign of zero included): aggregates add exactly these.
    assert {k: repr(v) for k, v in got.items()} == {k: repr(v) for k, v in want.items()}


def _at(hours: int, offset: int = 0) -> datetime:
    return (_BASE + timedelta(hours=hours)).astimezone(timezone(timedelta(hours=offset)))


@pytest.mark.parametrize(
    "state",
    [
        # Equal ranks: the first listed owner / closure wins, as with max() and min().
        TicketState("T", created=[Mark("e1", _at(0), "ann"), Mark("e1", _at(0, 8), "bob")]),
        TicketState("T", assigned=[Mark("e1", _at(9), "ann"), Mark("e1", _at(9, -5), "bob")]),
        TicketState(
            "T",
            closures=[Closure("e1", _at(1), "ann", True), Closure("e1", _at(1, 8), "bob", True)],
        ),
        TicketState(
            "T",
            closures=[Closure("e1", _at(9), "ann", True), Closure("e1", _at(9, 8), "bob", False)],
        ),
        # An assignment at the creation's instant supersedes it; later owners only count
        # when nobody owned the ticket by the survey.
        TicketState(
            "T", created=[Mark("e2", _at(0), "ann")], assigned=[Mark("e1", _at(0, 8), "bob")]
        ),
        TicketState("T", created=[Mark("e1", _at(3), "ann")], assigned=[Mark("e2", _at(5), "bob")]),
    ],
)
def test_ticket_contributions_tie_breaks(state: TicketState) -> None:
    state.surveys = [TicketSurvey("s1", "csat", _at(2), 5), TicketSurvey("s2", "nps", _at(7), 9)]
    state.first_response = Mark("f1", _at(2), "cy")
    for tz in (UTC, SH):
        want = _reference_contributions(state, tz, lambda a, b: a.utcoffset().total_seconds())
        assert ticket_contributions(state, tz, lambda a, b: a.utcoffset().total_seconds()) == want
