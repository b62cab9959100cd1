"""Unit tests of the pure KPI domain (services.scoring.kpi) against SPEC §1 and §3."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.scoring.kpi.contributions import (
    data_quality_issues,
    diff_contributions,
    simple_contributions,
    ticket_contributions,
    training_contributions,
)
from services.scoring.kpi.grading import KpiValue, evaluate, evaluate_all
from services.scoring.kpi.lines import DEFAULT_LINES, KpiLine, lines_with_overrides
from services.scoring.kpi.ticket import (
    TicketState,
    held_surveys,
    routes_to_session,
    routes_to_ticket,
)
from services.scoring.kpi.training import TrainingSession
from services.scoring.kpi.windows import (
    Window,
    WindowError,
    local_day,
    parse_quarter,
    parse_window,
    quarter_bounds,
)
from shared.catalogue import (
    APPRAISED_KEYS,
    FIRST_RESPONSE_SLA_RATE,
    GRADED_KEYS,
    KPI_KEYS,
    MEASURE_KEYS,
    REOPEN_RATE,
    RESOLUTION_TIME_HOURS,
)
from shared.events import EVENT_ADAPTER, Event
from tests.reference import reference_sums, reference_window

NY = ZoneInfo("America/New_York")
SH = ZoneInfo("Asia/Shanghai")
AS_OF = date(2026, 5, 15)
D30 = parse_window("30d", AS_OF)
D7 = parse_window("7d", AS_OF)
Q = parse_window("2026Q2", AS_OF)
QTD = parse_window("qtd", AS_OF)

_counter = 0


def ev(type_: str, at: datetime | str, **fields: Any) -> Event:
    """Build a validated event; ids are unique unless given."""
    global _counter
    _counter += 1
    payload: dict[str, Any] = {
        "event_id": fields.pop("event_id", f"e{_counter:05d}"),
        "type": type_,
        "occurred_at": at if isinstance(at, str) else at.isoformat(),
        **fields,
    }
    return EVENT_ADAPTER.validate_python(payload)


def t(day: int, hour: int = 12, minute: int = 0, month: int = 5) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def fold(events: list[Event], tz: Any = UTC) -> TicketState:
    tid = routes_to_ticket(events[0])
    assert tid is not None
    state = TicketState(tid)
    for e in events:
        state.apply(e)
    return state


# --------------------------------------------------------------------------- catalogue


def test_kpi_keys_in_table_order() -> None:
    assert KPI_KEYS == (
        "customer_satisfaction",
        "resolution_rate",
        "avg_response_time_hours",
        "record_accuracy",
        "followup_rate",
        "collaboration_score",
        "training_sessions",
        "nps",
        "resolution_time_hours",
        "first_response_sla_rate",
        "reopen_rate",
    )
    assert KPI_KEYS[:7] == GRADED_KEYS
    assert KPI_KEYS[:8] == APPRAISED_KEYS
    assert KPI_KEYS[8:] == MEASURE_KEYS
    assert set(DEFAULT_LINES) == set(KPI_KEYS)


def test_default_lines_match_spec_table() -> None:
    assert DEFAULT_LINES["customer_satisfaction"] == KpiLine(0.85, 0.90, 10, True)
    assert DEFAULT_LINES["resolution_rate"] == KpiLine(0.90, 0.95, 10, True)
    assert DEFAULT_LINES["avg_response_time_hours"] == KpiLine(24, 12, 10, False)
    assert DEFAULT_LINES["record_accuracy"] == KpiLine(0.95, 0.98, 5, True)
    assert DEFAULT_LINES["followup_rate"] == KpiLine(0.80, 0.90, 10, True)
    assert DEFAULT_LINES["collaboration_score"] == KpiLine(0.80, 0.90, 3, True)
    assert DEFAULT_LINES["training_sessions"] == KpiLine(1, None, None, True)
    assert DEFAULT_LINES["nps"] == KpiLine(None, None, None, True)
    with pytest.raises(TypeError):
        DEFAULT_LINES["nps"] = KpiLine(1, 1, 1, True)  # type: ignore[index]


def test_lines_with_overrides_applies_and_keeps_defaults() -> None:
    lines = lines_with_overrides(
        {"resolution_rate": {"qualified": 0.88}, "avg_response_time_hours": {"min_samples": 20}}
    )
    assert lines["resolution_rate"] == KpiLine(0.88, 0.95, 10, True)
    assert lines["avg_response_time_hours"] == KpiLine(24, 12, 20, False)
    assert lines["record_accuracy"] == DEFAULT_LINES["record_accuracy"]
    assert lines_with_overrides({}) == dict(DEFAULT_LINES)
    assert lines_with_overrides({"followup_rate": {"excellent": None}})["followup_rate"] == KpiLine(
        0.80, None, 10, True
    )
    assert lines_with_overrides({"training_sessions": {"qualified": 2}})[
        "training_sessions"
    ] == KpiLine(2.0, None, None, True)
    assert (
        lines_with_overrides({"customer_satisfaction": {"min_samples": 0}})[
            "customer_satisfaction"
        ].min_samples
        == 0
    )


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"speed": {"qualified": 1}}, "speed"),
        ({"resolution_rate": {"qualifed": 0.9}}, "resolution_rate.qualifed"),
        ({"resolution_rate": {"qualified": "high"}}, "resolution_rate.qualified"),
        ({"resolution_rate": {"qualified": True}}, "resolution_rate.qualified"),
        ({"resolution_rate": {"qualified": 85}}, "resolution_rate.qualified"),
        ({"resolution_rate": {"qualified": float("nan")}}, "resolution_rate.qualified"),
        ({"resolution_rate": {"qualified": None}}, "resolution_rate.qualified"),
        ({"resolution_rate": {"excellent": 0.5}}, "resolution_rate.excellent"),
        ({"avg_response_time_hours": {"excellent": 30}}, "avg_response_time_hours.excellent"),
        ({"avg_response_time_hours": {"qualified": -1}}, "avg_response_time_hours.qualified"),
        ({"record_accuracy": {"min_samples": -1}}, "record_accuracy.min_samples"),
        ({"record_accuracy": {"min_samples": 2.5}}, "record_accuracy.min_samples"),
        ({"record_accuracy": {"min_samples": False}}, "record_accuracy.min_samples"),
        ({"nps": {"qualified": 10}}, "nps"),
        ({"training_sessions": {"excellent": 3}}, "training_sessions.excellent"),
        ({"training_sessions": {"min_samples": 3}}, "training_sessions.min_samples"),
    ],
)
def test_lines_with_overrides_rejects_bad_input(overrides: Any, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        lines_with_overrides(overrides)


# ----------------------------------------------------------------------------- windows


def test_nd_windows_end_at_as_of_inclusive() -> None:
    assert parse_window("1d", AS_OF) == Window("1d", AS_OF, AS_OF, "days")
    assert parse_window("7d", AS_OF) == Window("7d", date(2026, 5, 9), AS_OF, "days")
    w = parse_window("30d", date(2026, 3, 1))
    assert (w.start, w.end, w.days) == (date(2026, 1, 31), date(2026, 3, 1), 30)
    w = parse_window("400d", AS_OF)
    assert w.days == 400 and w.end == AS_OF
    assert w.contains(w.start) and w.contains(AS_OF) and not w.contains(AS_OF + timedelta(1))
    # leap day counted as one of the N dates
    w = parse_window("2d", date(2024, 3, 1))
    assert w.start == date(2024, 2, 29)


def test_qtd_and_quarters() -> None:
    assert parse_window("qtd", AS_OF) == Window("qtd", date(2026, 4, 1), AS_OF, "qtd")
    assert parse_window("qtd", date(2026, 1, 1)) == Window(
        "qtd", date(2026, 1, 1), date(2026, 1, 1), "qtd"
    )
    assert parse_window("qtd", date(2026, 12, 31)).start == date(2026, 10, 1)
    assert parse_window("2026Q3", AS_OF) == Window(
        "2026Q3", date(2026, 7, 1), date(2026, 9, 30), "quarter"
    )
    # as_of is ignored for explicit quarters
    assert parse_window("2024Q1", date(1999, 1, 1)).end == date(2024, 3, 31)
    assert quarter_bounds(2024, 1) == (date(2024, 1, 1), date(2024, 3, 31))
    assert quarter_bounds(2024, 2) == (date(2024, 4, 1), date(2024, 6, 30))
    assert quarter_bounds(2023, 4) == (date(2023, 10, 1), date(2023, 12, 31))
    assert parse_window("2024Q1", AS_OF).days == 91  # leap year
    assert parse_window("2023Q1", AS_OF).days == 90
    assert parse_quarter("2026Q3") == (2026, 3)
    assert parse_window("2026q4", AS_OF).name == "2026Q4"


@pytest.mark.parametrize(
    "name",
    [
        "0d",
        "401d",
        "-1d",
        "07d",
        "d",
        "30",
        "30days",
        "7w",
        "",
        "q",
        "QTD2",
        "2026Q5",
        "2026Q0",
        "26Q1",
        "0000Q1",
        "2026-Q1",
        " ",
    ],
)
def test_bad_windows_are_rejected_with_a_clear_message(name: str) -> None:
    with pytest.raises(WindowError, match=r"window must be Nd \(1\.\.400\), qtd or YYYYQn"):
        parse_window(name, AS_OF)


def test_window_error_message_example_and_type() -> None:
    with pytest.raises(ValueError) as info:
        parse_window("0d", AS_OF)
    assert str(info.value) == "window must be Nd (1..400), qtd or YYYYQn, got '0d'"
    with pytest.raises(WindowError, match="quarter must be YYYYQn"):
        parse_quarter("2026Q5")
    with pytest.raises(WindowError):
        quarter_bounds(2026, 0)
    with pytest.raises(WindowError):
        parse_window("400d", date(1, 1, 5))


def test_local_day_uses_zone_and_rejects_naive() -> None:
    ts = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert local_day(ts, SH) == date(2026, 4, 1)
    assert local_day(ts, NY) == date(2026, 3, 31)
    assert local_day(datetime(2026, 1, 1, 4, 59, 59, 999000, tzinfo=UTC), NY) == date(2025, 12, 31)
    assert local_day(datetime(2026, 1, 1, 5, tzinfo=UTC), NY) == date(2026, 1, 1)
    with pytest.raises(ValueError, match="naive"):
        local_day(datetime(2026, 1, 1), UTC)


# ----------------------------------------------------------------------------- grading

L = DEFAULT_LINES


@pytest.mark.parametrize(
    ("key", "num", "den", "grade"),
    [
        ("customer_satisfaction", 18, 20, "excellent"),
        ("customer_satisfaction", 17, 20, "qualified"),  # exactly 0.85 is on the line
        ("customer_satisfaction", 16, 20, "unqualified"),
        ("customer_satisfaction", 9, 9, "insufficient_data"),
        ("customer_satisfaction", 0, 0, "insufficient_data"),
        ("resolution_rate", 19, 20, "excellent"),
        ("resolution_rate", 9, 10, "qualified"),
        ("resolution_rate", 8, 10, "unqualified"),
        ("record_accuracy", 49, 50, "excellent"),
        ("record_accuracy", 19, 20, "qualified"),
        ("record_accuracy", 4, 4, "insufficient_data"),
        ("record_accuracy", 4, 5, "unqualified"),
        ("followup_rate", 9, 10, "excellent"),
        ("followup_rate", 8, 10, "qualified"),
        ("followup_rate", 7, 10, "unqualified"),
        ("collaboration_score", 3, 3, "excellent"),
        ("collaboration_score", 2, 2, "insufficient_data"),
        ("collaboration_score", 4, 5, "qualified"),
        ("collaboration_score", 2, 3, "unqualified"),
    ],
)
def test_ratio_grades(key: str, num: int, den: int, grade: str) -> None:
    v = evaluate(key, num, den, L[key], D30)
    assert v.grade == grade
    assert v.numerator == num and v.denominator == den
    assert v.value == (None if den == 0 else num / den)
    assert (v.qualified, v.excellent, v.min_samples) == (
        L[key].qualified,
        L[key].excellent,
        L[key].min_samples,
    )


def test_epsilon_accepts_float_noise_at_the_line() -> None:
    line = KpiLine(0.3, None, 1, True)
    assert evaluate("resolution_rate", 0.1 + 0.2, 1, line, D30).grade == "qualified"
    assert evaluate("resolution_rate", 0.299999, 1, line, D30).grade == "unqualified"


@pytest.mark.parametrize(
    ("hours", "den", "grade"),
    [
        (120.0, 10, "excellent"),  # 12h
        (121.0, 10, "qualified"),
        (240.0, 10, "qualified"),  # 24h is on the line
        (240.5, 10, "unqualified"),
        (0.0, 10, "excellent"),
        (10.0, 9, "insufficient_data"),
    ],
)
def test_response_time_lower_is_better(hours: float, den: int, grade: str) -> None:
    v = evaluate("avg_response_time_hours", hours, den, L["avg_response_time_hours"], D30)
    assert v.grade == grade
    assert v.value == hours / den
    assert v.numerator == hours and isinstance(v.numerator, float)


def test_response_time_with_no_tickets_is_null() -> None:
    v = evaluate("avg_response_time_hours", 0.0, 0, L["avg_response_time_hours"], D30)
    assert v.value is None and v.grade == "insufficient_data" and v.denominator == 0


def test_nps_value_and_no_grade() -> None:
    v = evaluate("nps", 3, 10, L["nps"], D30)
    assert v.value == pytest.approx(30.0)
    assert (v.numerator, v.denominator, v.grade) == (3, 10, None)
    v = evaluate("nps", -2, 2, L["nps"], Q)
    assert v.value == -100.0 and v.grade is None
    v = evaluate("nps", 0, 0, L["nps"], Q)
    assert v.value is None and v.grade is None
    assert v.to_dict() == {
        "value": None,
        "numerator": 0,
        "denominator": 0,
        "grade": None,
        "qualified": None,
        "excellent": None,
        "min_samples": None,
    }


@pytest.mark.parametrize(
    ("window", "count", "grade"),
    [
        (Q, 0, "unqualified"),
        (Q, 1, "qualified"),
        (Q, 5, "qualified"),  # never excellent: no excellent line
        (QTD, 0, "unqualified"),
        (QTD, 2, "qualified"),
        (D30, 0, None),
        (D7, 3, None),
    ],
)
def test_training_sessions_graded_on_quarters_only(window: Window, count: int, grade: str) -> None:
    v = evaluate("training_sessions", count, count, L["training_sessions"], window)
    assert v.value == count and v.numerator == count
    assert v.denominator is None
    assert v.grade == grade
    assert v.qualified == 1 and v.excellent is None and v.min_samples is None


def test_evaluate_all_fills_missing_keys_and_to_dict_shape() -> None:
    out = evaluate_all({"resolution_rate": (9.0, 10)}, Q)
    assert list(out) == list(KPI_KEYS)
    assert out["resolution_rate"].grade == "qualified"
    assert out["resolution_rate"].numerator == 9 and isinstance(
        out["resolution_rate"].numerator, int
    )
    assert out["customer_satisfaction"] == KpiValue(None, 0, 0, "insufficient_data", 0.85, 0.9, 10)
    assert out["training_sessions"].to_dict() == {
        "value": 0,
        "numerator": 0,
        "denominator": None,
        "grade": "unqualified",
        "qualified": 1.0,
        "excellent": None,
        "min_samples": None,
    }
    for value in out.values():
        assert set(value.to_dict()) == {
            "value",
            "numerator",
            "denominator",
            "grade",
            "qualified",
            "excellent",
            "min_samples",
        }
        json.dumps(value.to_dict())
    custom = lines_with_overrides({"resolution_rate": {"min_samples": 20}})
    assert evaluate_all({"resolution_rate": (9.0, 10)}, Q, custom)["resolution_rate"].grade == (
        "insufficient_data"
    )
    with pytest.raises(ValueError, match="unknown KPI key"):
        evaluate("speed", 1, 1, L["nps"], Q)


# ------------------------------------------------------------------------ ticket state


def test_closure_counts_once_on_latest_close_and_reopen_moves_it() -> None:
    created = ev("ticket.created", t(1, 9), ticket_id="T1", specialist_id="alice")
    close1 = ev("ticket.closed", t(2), ticket_id="T1", specialist_id="alice", resolved=True)
    state = fold([created, close1])
    assert ticket_contributions(state, UTC) == {
        ("alice", date(2026, 5, 2), "resolution_rate"): (1.0, 1),
        ("alice", date(2026, 5, 2), "followup_rate"): (0.0, 1),
        ("alice", date(2026, 5, 2), "reopen_rate"): (0.0, 1),
        ("alice", date(2026, 5, 2), "resolution_time_hours"): (27.0, 1),
    }
    before = ticket_contributions(state, UTC)
    reopen = ev("ticket.reopened", t(3), ticket_id="T1")
    assert state.apply(reopen)
    after_reopen = ticket_contributions(state, UTC)
    assert after_reopen == {}
    assert diff_contributions(before, after_reopen) == {
        ("alice", date(2026, 5, 2), "resolution_rate"): (-1.0, -1),
        ("alice", date(2026, 5, 2), "followup_rate"): (-0.0, -1),
        ("alice", date(2026, 5, 2), "reopen_rate"): (-0.0, -1),
        ("alice", date(2026, 5, 2), "resolution_time_hours"): (-27.0, -1),
    }
    close2 = ev("ticket.closed", t(4), ticket_id="T1", specialist_id="bob", resolved=False)
    state.apply(close2)
    # Closed again: counted on the new date, from the creation, and it was reopened before.
    reclosed = {
        ("bob", date(2026, 5, 4), "resolution_rate"): (0.0, 1),
        ("bob", date(2026, 5, 4), "reopen_rate"): (1.0, 1),
        ("bob", date(2026, 5, 4), "resolution_time_hours"): (75.0, 1),
    }
    assert ticket_contributions(state, UTC) == reclosed
    # A late-arriving follow-up does not matter for an unresolved closure.
    state.apply(ev("ticket.followup", t(5), ticket_id="T1", specialist_id="bob"))
    assert ticket_contributions(state, UTC) == reclosed


def test_reopen_at_same_instant_does_not_cancel_and_close_ties_use_larger_id() -> None:
    a = ev("ticket.closed", t(2), ticket_id="T2", specialist_id="a", resolved=True, event_id="x1")
    b = ev("ticket.closed", t(2), ticket_id="T2", specialist_id="b", resolved=False, event_id="x2")
    r = ev("ticket.reopened", t(2), ticket_id="T2")
    for order in ([a, b, r], [r, b, a]):
        state = fold(order)
        # A reopen at the closure's instant is neither after it nor strictly before it.
        assert ticket_contributions(state, UTC) == {
            ("b", date(2026, 5, 2), "resolution_rate"): (0.0, 1),
            ("b", date(2026, 5, 2), "reopen_rate"): (0.0, 1),
        }


def test_followup_before_or_after_closure() -> None:
    f = ev("ticket.followup", t(9), ticket_id="T3", specialist_id="a")
    c = ev("ticket.closed", t(2), ticket_id="T3", specialist_id="a", resolved=True)
    for order in ([f, c], [c, f]):
        assert ticket_contributions(fold(order), UTC)[("a", date(2026, 5, 2), "followup_rate")] == (
            1.0,
            1,
        )


def test_response_time_earliest_pair_and_negative_excluded() -> None:
    c1 = ev("ticket.created", t(1, 8), ticket_id="T4")
    c2 = ev("ticket.created", t(1, 10), ticket_id="T4", specialist_id="x")
    fr_late = ev("ticket.first_response", t(1, 20), ticket_id="T4", specialist_id="y")
    fr = ev("ticket.first_response", t(1, 14, 30), ticket_id="T4", specialist_id="z")
    state = fold([fr_late, c2])
    assert ticket_contributions(state, UTC) == {
        ("y", date(2026, 5, 1), "avg_response_time_hours"): (10.0, 1),
        ("y", date(2026, 5, 1), "first_response_sla_rate"): (1.0, 1),
    }
    state.apply(fr)
    state.apply(c1)
    assert ticket_contributions(state, UTC) == {
        ("z", date(2026, 5, 1), "avg_response_time_hours"): (6.5, 1),
        ("z", date(2026, 5, 1), "first_response_sla_rate"): (1.0, 1),
    }
    # The SLA line is inclusive and follows the setting.
    assert ticket_contributions(state, UTC, sla_hours=6.5)[
        ("z", date(2026, 5, 1), "first_response_sla_rate")
    ] == (1.0, 1)
    assert ticket_contributions(state, UTC, sla_hours=6.49)[
        ("z", date(2026, 5, 1), "first_response_sla_rate")
    ] == (0.0, 1)
    assert data_quality_issues(state) == []
    # response known without creation: nothing yet
    assert ticket_contributions(fold([fr]), UTC) == {}
    neg = fold(
        [
            ev("ticket.created", t(2), ticket_id="T5"),
            ev("ticket.first_response", t(1), ticket_id="T5", specialist_id="q"),
        ]
    )
    assert ticket_contributions(neg, UTC) == {}
    assert data_quality_issues(neg) == ["negative_response_time"]
    zero = fold(
        [
            ev("ticket.created", t(2), ticket_id="T6"),
            ev("ticket.first_response", t(2), ticket_id="T6", specialist_id="q"),
        ]
    )
    assert ticket_contributions(zero, UTC) == {
        ("q", date(2026, 5, 2), "avg_response_time_hours"): (0.0, 1),
        ("q", date(2026, 5, 2), "first_response_sla_rate"): (1.0, 1),
    }


def test_response_time_across_dst_is_real_elapsed_time() -> None:
    # 2026-03-08 02:00 EST -> EDT in New York: 01:30 EST to 03:30 EDT is one hour.
    created = ev("ticket.created", "2026-03-08T01:30:00-05:00", ticket_id="T7")
    fr = ev("ticket.first_response", "2026-03-08T03:30:00-04:00", ticket_id="T7", specialist_id="s")
    assert ticket_contributions(fold([created, fr]), NY) == {
        ("s", date(2026, 3, 8), "avg_response_time_hours"): (1.0, 1),
        ("s", date(2026, 3, 8), "first_response_sla_rate"): (1.0, 1),
    }


def test_survey_attribution_rules() -> None:
    created = ev("ticket.created", t(1), ticket_id="T8", specialist_id="creator")
    assigned = ev("ticket.assigned", t(2), ticket_id="T8", specialist_id="assignee")
    closed = ev("ticket.closed", t(3), ticket_id="T8", specialist_id="closer", resolved=True)
    reopened = ev("ticket.reopened", t(4), ticket_id="T8")
    csat = ev("survey.csat", t(5), ticket_id="T8", score=4)
    early_nps = ev("survey.nps", t(1, 6), ticket_id="T8", score=3)
    mid_nps = ev("survey.nps", t(2, 18), ticket_id="T8", score=9)
    key = ("closer", date(2026, 5, 5), "customer_satisfaction")

    # held: no specialist known
    state = fold([csat])
    assert ticket_contributions(state, UTC) == {}
    assert [s.event_id for s in held_surveys(state)] == [csat.event_id]
    # only a later creation is known: earliest such event
    state.apply(early_nps)
    state.apply(created)
    got = ticket_contributions(state, UTC)
    assert got[("creator", date(2026, 5, 5), "customer_satisfaction")] == (1.0, 1)
    assert got[("creator", date(2026, 5, 1), "nps")] == (-1.0, 1)
    # assignment at or before the survey wins over creation
    state.apply(assigned)
    state.apply(mid_nps)
    got = ticket_contributions(state, UTC)
    assert got[("assignee", date(2026, 5, 5), "customer_satisfaction")] == (1.0, 1)
    assert got[("assignee", date(2026, 5, 2), "nps")] == (1.0, 1)
    assert got[("creator", date(2026, 5, 1), "nps")] == (-1.0, 1)
    # a late closure moves the survey, even when that closure was reopened
    state.apply(closed)
    state.apply(reopened)
    got = ticket_contributions(state, UTC)
    assert got == {
        key: (1.0, 1),
        ("assignee", date(2026, 5, 2), "nps"): (1.0, 1),
        ("creator", date(2026, 5, 1), "nps"): (-1.0, 1),
    }
    assert held_surveys(state) == []


def test_survey_at_exact_closure_instant_and_passive_nps() -> None:
    closed = ev("ticket.closed", t(3), ticket_id="T9", specialist_id="c", resolved=False)
    nps = ev("survey.nps", t(3), ticket_id="T9", score=7)
    got = ticket_contributions(fold([nps, closed]), UTC)
    assert got[("c", date(2026, 5, 3), "nps")] == (0.0, 1)


def test_apply_is_idempotent_and_checks_ticket() -> None:
    e = ev("ticket.created", t(1), ticket_id="T10", specialist_id="a")
    fr1 = ev("ticket.first_response", t(2), ticket_id="T10", specialist_id="a")
    fr2 = ev("ticket.first_response", t(3), ticket_id="T10", specialist_id="b")
    fu = ev("ticket.followup", t(3), ticket_id="T10", specialist_id="b")
    state = TicketState("T10")
    assert state.apply(e) and not state.apply(e)
    assert state.apply(fr2) and state.apply(fr1)
    assert not state.apply(fr2) and not state.apply(fr1)
    assert state.apply(fu) and not state.apply(fu)
    with pytest.raises(ValueError, match="does not update ticket T10"):
        state.apply(ev("ticket.created", t(1), ticket_id="OTHER"))
    with pytest.raises(ValueError):
        state.apply(ev("record.audited", t(1), specialist_id="a", ticket_id="T10", accurate=True))


def test_state_json_round_trip_is_compact_and_order_independent() -> None:
    events = [
        ev("ticket.created", "2026-05-01T08:00:00+08:00", ticket_id="T11", specialist_id="a"),
        ev("ticket.assigned", "2026-05-01T09:00:00Z", ticket_id="T11", specialist_id="b"),
        ev(
            "ticket.first_response",
            "2026-05-01T10:00:00.123456Z",
            ticket_id="T11",
            specialist_id="b",
        ),
        ev("ticket.first_response", "2026-05-01T11:00:00Z", ticket_id="T11", specialist_id="c"),
        ev(
            "ticket.closed",
            "2026-05-02T10:00:00-04:00",
            ticket_id="T11",
            specialist_id="b",
            resolved=True,
        ),
        ev("ticket.reopened", "2026-05-02T10:00:00-05:00", ticket_id="T11"),
        ev("ticket.followup", "2026-05-03T10:00:00Z", ticket_id="T11", specialist_id="b"),
        ev("survey.csat", "2026-05-03T10:00:00Z", ticket_id="T11", score=2),
        ev("survey.nps", "2026-05-04T10:00:00Z", ticket_id="T11", score=10),
    ]
    forward = fold(events)
    backward = fold(events[::-1])
    doc = forward.to_json()
    assert doc == backward.to_json()
    text = json.dumps(doc)
    again = TicketState.from_json(json.loads(text))
    assert again.to_json() == doc
    assert ticket_contributions(again, SH) == ticket_contributions(forward, SH)
    assert again.event_ids() == {e.event_id for e in events}
    for e in events:
        assert not again.apply(e)
    with pytest.raises(ValueError):
        TicketState.from_json({"v": 99, "ticket_id": "x"})
    with pytest.raises(ValueError):
        TicketState.from_json({**doc, "x": [["only-id"]]})
    with pytest.raises(ValueError):
        TicketState.from_json({**doc, "v": 1, "ticket_id": "T11", "closed": [["only-id"]]})


# ------------------------------------------------------------------ simple + training


def test_simple_contributions_and_routing() -> None:
    at = "2026-06-30T23:59:59.999-04:00"  # NY quarter end, already Q3 in UTC
    audit = ev("record.audited", at, specialist_id="a", accurate=False, ticket_id="T1")
    peer = ev("survey.peer_review", at, specialist_id="a", reviewer_id="b", score=4)
    csat = ev("survey.csat", at, specialist_id="a", ticket_id="T1", score=3)
    nps = ev("survey.nps", at, specialist_id="a", score=9)
    day = date(2026, 6, 30)
    assert simple_contributions(audit, NY) == {("a", day, "record_accuracy"): (0.0, 1)}
    assert simple_contributions(peer, NY) == {("a", day, "collaboration_score"): (1.0, 1)}
    # A survey naming its ticket and a specialist is ticket state now (issue 17: its channel).
    assert simple_contributions(csat, NY) == {} and routes_to_ticket(csat) == "T1"
    plain_csat = ev("survey.csat", at, specialist_id="a", score=3)
    assert simple_contributions(plain_csat, NY) == {("a", day, "customer_satisfaction"): (0.0, 1)}
    assert simple_contributions(nps, NY) == {("a", day, "nps"): (1.0, 1)}
    assert simple_contributions(audit, UTC) == {
        ("a", date(2026, 7, 1), "record_accuracy"): (0.0, 1)
    }
    for e in (audit, peer, plain_csat, nps):
        assert routes_to_ticket(e) is None
    held = ev("survey.csat", at, ticket_id="T1", score=5)
    assert routes_to_ticket(held) == "T1" and simple_contributions(held, NY) == {}
    closed = ev("ticket.closed", at, ticket_id="T1", specialist_id="a", resolved=True)
    assert routes_to_ticket(closed) == "T1" and simple_contributions(closed, NY) == {}
    training = ev("survey.training", at, session_id="S", specialist_id="a", session_at=at, score=5)
    assert routes_to_ticket(training) is None and simple_contributions(training, NY) == {}
    assert routes_to_session(training) == "S"


def test_training_session_mean_and_earliest_feedback_decides() -> None:
    session_at = "2026-03-31T23:30:00-04:00"  # NY Q1, but Q2 in Shanghai
    f1 = ev(
        "survey.training",
        "2026-04-01T10:00:00Z",
        session_id="S1",
        specialist_id="tr",
        session_at=session_at,
        score=5,
        event_id="f1",
    )
    f2 = ev(
        "survey.training",
        "2026-04-02T10:00:00Z",
        session_id="S1",
        specialist_id="other",
        session_at="2026-04-05T10:00:00Z",
        score=3,
        event_id="f2",
    )
    f3 = ev(
        "survey.training",
        "2026-04-03T10:00:00Z",
        session_id="S1",
        specialist_id="tr",
        session_at=session_at,
        score=4,
        event_id="f3",
    )
    session = TrainingSession("S1")
    assert session.apply(f2)
    assert training_contributions(session, NY) == {}  # mean 3
    assert session.apply(f1) and not session.apply(f1)
    assert training_contributions(session, NY) == {
        ("tr", date(2026, 3, 31), "training_sessions"): (1.0, 1)
    }
    assert training_contributions(session, SH) == {
        ("tr", date(2026, 4, 1), "training_sessions"): (1.0, 1)
    }
    session.apply(f3)  # mean (5+3+4)/3 = 4.0 exactly -> counts
    assert training_contributions(session, NY) == {
        ("tr", date(2026, 3, 31), "training_sessions"): (1.0, 1)
    }
    again = TrainingSession.from_json(json.loads(json.dumps(session.to_json())))
    assert again.to_json() == session.to_json()
    assert training_contributions(again, NY) == training_contributions(session, NY)
    with pytest.raises(ValueError):
        session.apply(
            ev(
                "survey.training",
                session_at,
                session_id="S2",
                specialist_id="tr",
                session_at=session_at,
                score=5,
            )
        )
    assert training_contributions(TrainingSession("empty"), NY) == {}


def test_diff_contributions_drops_unchanged() -> None:
    k1 = ("a", date(2026, 1, 1), "resolution_rate")
    k2 = ("a", date(2026, 1, 2), "resolution_rate")
    assert diff_contributions({k1: (1.0, 1)}, {k1: (1.0, 1)}) == {}
    assert diff_contributions({k1: (1.0, 1)}, {k2: (0.0, 1)}) == {k1: (-1.0, -1), k2: (0.0, 1)}
    assert diff_contributions({}, {k1: (2.5, 1)}) == {k1: (2.5, 1)}


# -------------------------------------------------------------- reference agreement


def test_reference_agrees_on_a_small_story() -> None:
    events = [
        ev("ticket.created", t(10, 9), ticket_id="R1", specialist_id="ann"),
        ev("ticket.first_response", t(10, 11, 15), ticket_id="R1", specialist_id="ann"),
        ev("ticket.closed", t(11), ticket_id="R1", specialist_id="ann", resolved=True),
        ev("ticket.followup", t(12), ticket_id="R1", specialist_id="ann"),
        ev("survey.csat", t(12), ticket_id="R1", score=5),
        ev("record.audited", t(12), specialist_id="ann", accurate=True),
        ev("survey.peer_review", t(13), specialist_id="ann", reviewer_id="bo", score=2),
        ev(
            "survey.training",
            t(14),
            session_id="S",
            specialist_id="ann",
            session_at=t(13).isoformat(),
            score=4,
        ),
    ]
    events.append(events[2])  # redelivery
    sums = reference_sums(events, UTC)
    assert sums == {
        ("ann", date(2026, 5, 10), "avg_response_time_hours"): (2.25, 1),
        ("ann", date(2026, 5, 10), "first_response_sla_rate"): (1.0, 1),
        ("ann", date(2026, 5, 11), "resolution_rate"): (1.0, 1),
        ("ann", date(2026, 5, 11), "reopen_rate"): (0.0, 1),
        ("ann", date(2026, 5, 11), "resolution_time_hours"): (27.0, 1),
        ("ann", date(2026, 5, 11), "followup_rate"): (1.0, 1),
        ("ann", date(2026, 5, 12), "customer_satisfaction"): (1.0, 1),
        ("ann", date(2026, 5, 12), "record_accuracy"): (1.0, 1),
        ("ann", date(2026, 5, 13), "collaboration_score"): (0.0, 1),
        ("ann", date(2026, 5, 13), "training_sessions"): (1.0, 1),
    }
    window = reference_window(events, UTC, "ann", D7)
    assert window["resolution_rate"] == (1.0, 1) and window["nps"] == (0.0, 0)
    values = evaluate_all({k: v for k, v in window.items()}, D7)
    assert values["avg_response_time_hours"].value == 2.25
    assert values["training_sessions"].grade is None
    assert math.isclose(reference_window(events, UTC, "ann", Q)["avg_response_time_hours"][0], 2.25)


def test_event_timestamp_offsets_do_not_change_instants() -> None:
    a = ev(
        "ticket.created",
        datetime(2026, 5, 1, 20, tzinfo=timezone(timedelta(hours=8))),
        ticket_id="Z",
    )
    assert a.occurred_at == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_equal_instant_tie_breaks() -> None:
    # first responses at one instant: the smaller event_id is "earliest"
    c = ev("ticket.created", t(1, 8), ticket_id="TT", event_id="c")
    fr_b = ev("ticket.first_response", t(1, 9), ticket_id="TT", specialist_id="b", event_id="fb")
    fr_a = ev("ticket.first_response", t(1, 9), ticket_id="TT", specialist_id="a", event_id="fa")
    for order in ([c, fr_b, fr_a], [fr_a, fr_b, c]):
        assert ticket_contributions(fold(order), UTC) == {
            ("a", date(2026, 5, 1), "avg_response_time_hours"): (1.0, 1),
            ("a", date(2026, 5, 1), "first_response_sla_rate"): (1.0, 1),
        }
    # created and assigned at one instant: the assignment is the newer owner,
    # whatever the ids say; "earliest such event" picks the creation's owner.
    created = ev("ticket.created", t(2), ticket_id="TU", specialist_id="creator", event_id="z9")
    assigned = ev("ticket.assigned", t(2), ticket_id="TU", specialist_id="assignee", event_id="a1")
    after = ev("survey.csat", t(3), ticket_id="TU", score=5, event_id="s1")
    before = ev("survey.csat", t(1), ticket_id="TU", score=1, event_id="s2")
    got = ticket_contributions(fold([after, before, assigned, created]), UTC)
    assert got == {
        ("assignee", date(2026, 5, 3), "customer_satisfaction"): (1.0, 1),
        ("creator", date(2026, 5, 1), "customer_satisfaction"): (0.0, 1),
    }
    assert reference_sums([after, before, assigned, created], UTC) == got


# ------------------------------------------------------- SPEC §3a informational measures


def test_resolution_time_zero_huge_and_negative() -> None:
    created = ev("ticket.created", t(1, 9), ticket_id="RT", specialist_id="a", resolved=False)
    # Closed at the creation instant: 0 h, included.
    at_once = fold(
        [created, ev("ticket.closed", t(1, 9), ticket_id="RT", specialist_id="a", resolved=False)]
    )
    assert ticket_contributions(at_once, UTC)[("a", date(2026, 5, 1), RESOLUTION_TIME_HOURS)] == (
        0.0,
        1,
    )
    assert data_quality_issues(at_once) == []
    # 400 days later: counted in full on the closure's date.
    late = created.occurred_at + timedelta(days=400)
    huge = fold(
        [created, ev("ticket.closed", late, ticket_id="RT", specialist_id="b", resolved=False)]
    )
    assert ticket_contributions(huge, UTC)[("b", late.date(), RESOLUTION_TIME_HOURS)] == (9600.0, 1)
    # Closed before its creation: excluded from the time, still a closure; an issue.
    early = fold(
        [created, ev("ticket.closed", t(1, 8), ticket_id="RT", specialist_id="c", resolved=False)]
    )
    got = ticket_contributions(early, UTC)
    assert ("c", date(2026, 5, 1), RESOLUTION_TIME_HOURS) not in got
    assert got[("c", date(2026, 5, 1), "resolution_rate")] == (0.0, 1)
    assert data_quality_issues(early) == ["negative_resolution_time"]
    # Without a known creation: no resolution time, no issue.
    alone = fold([ev("ticket.closed", t(2), ticket_id="RU", specialist_id="c", resolved=False)])
    assert set(ticket_contributions(alone, UTC)) == {
        ("c", date(2026, 5, 2), "resolution_rate"),
        ("c", date(2026, 5, 2), REOPEN_RATE),
    }
    assert data_quality_issues(alone) == []


def test_sla_and_huge_response_times() -> None:
    created = ev("ticket.created", t(1, 9), ticket_id="SL")
    late = created.occurred_at + timedelta(days=400)
    state = fold([created, ev("ticket.first_response", late, ticket_id="SL", specialist_id="a")])
    got = ticket_contributions(state, UTC)
    assert got[("a", late.date(), "avg_response_time_hours")] == (9600.0, 1)
    assert got[("a", late.date(), FIRST_RESPONSE_SLA_RATE)] == (0.0, 1)
    exactly = created.occurred_at + timedelta(hours=24)
    on_line = fold(
        [created, ev("ticket.first_response", exactly, ticket_id="SL", specialist_id="a")]
    )
    assert ticket_contributions(on_line, UTC)[("a", exactly.date(), FIRST_RESPONSE_SLA_RATE)] == (
        1.0,
        1,
    )
    over = fold(
        [
            created,
            ev(
                "ticket.first_response",
                exactly + timedelta(milliseconds=1),
                ticket_id="SL",
                specialist_id="a",
            ),
        ]
    )
    assert ticket_contributions(over, UTC)[("a", exactly.date(), FIRST_RESPONSE_SLA_RATE)] == (
        0.0,
        1,
    )
    # A negative response time has no SLA bit either.
    neg = fold([created, ev("ticket.first_response", t(1, 8), ticket_id="SL", specialist_id="a")])
    assert ticket_contributions(neg, UTC) == {}


def test_reopen_rate_counts_reopens_strictly_before_the_latest_closure() -> None:
    c1 = ev("ticket.closed", t(2), ticket_id="RO", specialist_id="a", resolved=True)
    r = ev("ticket.reopened", t(3), ticket_id="RO")
    c2 = ev("ticket.closed", t(4), ticket_id="RO", specialist_id="b", resolved=True)
    for order in ([c1, r, c2], [c2, r, c1], [r, c2, c1]):
        state = fold(order)
        assert state.reopened_before_closure()
        assert ticket_contributions(state, UTC)[("b", date(2026, 5, 4), REOPEN_RATE)] == (1.0, 1)
    # Reopened and not closed again: no closure, nothing counted.
    open_again = fold([c1, r])
    assert not open_again.reopened_before_closure()
    assert all(k[2] != REOPEN_RATE for k in ticket_contributions(open_again, UTC))


def test_measures_are_graded_only_with_lines() -> None:
    sums = {
        RESOLUTION_TIME_HOURS: (30.0, 2),
        FIRST_RESPONSE_SLA_RATE: (3.0, 4),
        REOPEN_RATE: (1.0, 4),
    }
    values = evaluate_all(sums, D7)
    assert values[RESOLUTION_TIME_HOURS].value == 15.0
    assert values[RESOLUTION_TIME_HOURS].numerator == 30.0
    assert values[FIRST_RESPONSE_SLA_RATE].value == 0.75
    assert values[REOPEN_RATE].value == 0.25
    assert all(values[k].grade is None for k in MEASURE_KEYS)
    assert all(values[k].qualified is None for k in MEASURE_KEYS)
    lines = lines_with_overrides(
        {
            REOPEN_RATE: {"qualified": 0.2, "excellent": 0.1, "min_samples": 4},
            RESOLUTION_TIME_HOURS: {"qualified": 48, "min_samples": 3},
        }
    )
    graded = evaluate_all(sums, D7, lines)
    assert graded[REOPEN_RATE].grade == "unqualified"  # lower is better: 0.25 > 0.2
    assert graded[RESOLUTION_TIME_HOURS].grade == "insufficient_data"
    assert graded[FIRST_RESPONSE_SLA_RATE].grade is None
    with pytest.raises(ValueError, match=r"reopen_rate.excellent \(0.3\) must not be worse"):
        lines_with_overrides({REOPEN_RATE: {"qualified": 0.2, "excellent": 0.3}})
    with pytest.raises(ValueError, match=r"first_response_sla_rate.qualified .* ratio"):
        lines_with_overrides({FIRST_RESPONSE_SLA_RATE: {"qualified": 2}})
    with pytest.raises(ValueError, match=r"reopen_rate.min_samples needs reopen_rate.qualified"):
        lines_with_overrides({REOPEN_RATE: {"min_samples": 3}})
    # Lines may be removed again (qualified null).
    assert lines_with_overrides({REOPEN_RATE: {"qualified": None}})[REOPEN_RATE].qualified is None
