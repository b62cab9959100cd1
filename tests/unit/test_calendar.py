"""Business calendar: weekends, holidays, 调休 workdays, lunch, vs a minute-counting model."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.calendar import (
    BusinessCalendar,
    CalendarError,
    load_calendar,
    parse_calendar,
)
from services.scoring.kpi.contributions import (
    NEGATIVE_RESPONSE_TIME,
    data_quality_issues,
    ticket_contributions,
)
from services.scoring.kpi.ticket import TicketState
from shared.catalogue import (
    AVG_RESPONSE_TIME_HOURS,
    FIRST_RESPONSE_SLA_RATE,
    RESOLUTION_TIME_HOURS,
)
from shared.events import validate_event_obj

SH = ZoneInfo("Asia/Shanghai")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "calendar-cn-2026.yaml"


@pytest.fixture(scope="module")
def cn() -> BusinessCalendar:
    return load_calendar(EXAMPLE)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=SH)


def test_example_file_loads(cn: BusinessCalendar) -> None:
    assert cn.name == "cn-2026"
    assert cn.periods == ((9 * 60, 12 * 60), (13 * 60, 18 * 60))
    assert cn.hours_per_day == 8
    assert cn.is_workday(dt.date(2026, 2, 14))  # Saturday, 调休
    assert not cn.is_workday(dt.date(2026, 2, 16))  # Monday, Spring Festival
    assert not cn.is_workday(dt.date(2026, 3, 7))  # ordinary Saturday
    assert cn.is_workday(dt.date(2026, 3, 9))  # ordinary Monday


def test_across_a_weekend(cn: BusinessCalendar) -> None:
    # Friday 17:00 -> Monday 10:00: one hour on Friday, one on Monday; 65 calendar hours.
    assert cn.business_hours_between(at(2026, 3, 6, 17), at(2026, 3, 9, 10)) == 2.0


def test_across_a_public_holiday(cn: BusinessCalendar) -> None:
    # Qingming: Saturday 4 April to Monday 6 April; Friday 17:00 -> Tuesday 10:00.
    assert cn.business_hours_between(at(2026, 4, 3, 17), at(2026, 4, 7, 10)) == 2.0
    # The same span a week later (no holiday) counts Monday as a full day.
    assert cn.business_hours_between(at(2026, 4, 10, 17), at(2026, 4, 14, 10)) == 10.0


def test_make_up_workday_counts(cn: BusinessCalendar) -> None:
    # Saturday 14 February 2026 is a 调休 working day: Friday 17:00 -> Saturday 10:00 = 2 h.
    assert cn.business_hours_between(at(2026, 2, 13, 17), at(2026, 2, 14, 10)) == 2.0
    # Saturday 14 Feb 17:00 -> Tuesday 24 Feb 09:30 skips the whole Spring Festival.
    assert cn.business_hours_between(at(2026, 2, 14, 17), at(2026, 2, 24, 9, 30)) == 1.5


def test_lunch_break_and_outside_hours(cn: BusinessCalendar) -> None:
    assert cn.business_hours_between(at(2026, 3, 9, 11, 30), at(2026, 3, 9, 13, 30)) == 1.0
    assert cn.business_hours_between(at(2026, 3, 9, 19), at(2026, 3, 10, 8)) == 0.0
    assert cn.business_hours_between(at(2026, 3, 9, 12, 10), at(2026, 3, 9, 12, 50)) == 0.0


def test_other_offsets_and_reversed_spans(cn: BusinessCalendar) -> None:
    utc_start = at(2026, 3, 6, 17).astimezone(dt.UTC)  # 09:00Z
    assert cn.business_hours_between(utc_start, at(2026, 3, 9, 10)) == 2.0
    assert cn.business_hours_between(at(2026, 3, 9, 10), at(2026, 3, 6, 17)) == -2.0
    with pytest.raises(ValueError, match="naive"):
        cn.business_hours_between(dt.datetime(2026, 3, 6, 17), at(2026, 3, 9, 10))


def test_zone_falls_back_to_the_organisation() -> None:
    cal = parse_calendar({"working_hours": "09:00-17:00"})
    with pytest.raises(ValueError, match="time zone"):
        cal.business_hours_between(at(2026, 3, 9, 9), at(2026, 3, 9, 10))
    new_york = ZoneInfo("America/New_York")
    start = dt.datetime(2026, 3, 9, 8, tzinfo=new_york)
    assert cal.business_hours_between(start, start + dt.timedelta(hours=3), new_york) == 2.0


def test_dst_day_uses_wall_clock_hours() -> None:
    # New York springs forward on 8 March 2026 (a Sunday made a workday here): 00:00-06:00
    # wall clock is only five real hours.
    ny = ZoneInfo("America/New_York")
    cal = parse_calendar({"working_hours": "00:00-06:00", "rest_weekdays": [], "timezone": ny.key})
    day = dt.datetime(2026, 3, 8, tzinfo=ny)
    assert cal.business_hours_between(day, day + dt.timedelta(days=1)) == 5.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"working_hours": "9-18"}, "working_hours[0]"),
        ({"working_hours": "18:00-09:00"}, "working_hours[0]"),
        ({"lunch_break": "12:00"}, "lunch_break"),
        ({"rest_weekdays": ["caturday"]}, "rest_weekdays[0]"),
        ({"holidays": ["2026-02-30"]}, "holidays[0]"),
        ({"holidays": [{"from": "2026-02-10", "to": "2026-02-01"}]}, "holidays[0].to"),
        ({"workdays": "2026-02-14"}, "workdays"),
        ({"holidays": ["2026-02-14"], "workdays": ["2026-02-14"]}, "2026-02-14"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"holiday": []}, "unknown calendar keys"),
        ({"name": "calendar-hours"}, "reserved"),
        ({"working_hours": ["09:00-13:00", "12:00-18:00"]}, "overlap"),
        (
            {"rest_weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
            "at least one",
        ),
    ],
)
def test_bad_calendar_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(CalendarError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_calendar(data)


def test_load_json_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "acme.json"
    path.write_text(json.dumps({"working_hours": ["08:00-12:00", "14:00-18:00"]}))
    cal = load_calendar(path)
    assert cal.name == "acme" and cal.hours_per_day == 8
    with pytest.raises(CalendarError, match="cannot read"):
        load_calendar(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("holidays: [")
    with pytest.raises(CalendarError, match="not valid YAML"):
        load_calendar(bad)


# -- reference model: count working minutes one by one --------------------------------------


def minutes_model(cal: BusinessCalendar, start: dt.datetime, end: dt.datetime) -> float:
    total = 0
    t = start
    while t < end:
        local = t.astimezone(SH)
        minute = local.hour * 60 + local.minute
        if cal.is_workday(local.date()) and any(a <= minute < b for a, b in cal.periods):
            total += 1
        t += dt.timedelta(minutes=1)
    return total / 60.0


BASE = at(2026, 2, 10)  # spans Spring Festival, 调休 Saturdays and ordinary weekends
instants = st.integers(0, 24 * 60 * 24).map(lambda m: BASE + dt.timedelta(minutes=m))


@settings(max_examples=60, deadline=None)
@given(a=instants, b=instants)
def test_equals_minute_counting_model(a: dt.datetime, b: dt.datetime) -> None:
    cal = load_calendar(EXAMPLE)
    start, end = min(a, b), max(a, b)
    got = cal.business_hours_between(start, end)
    assert got == pytest.approx(minutes_model(cal, start, end), abs=1e-9)
    assert 0 <= got <= (end - start).total_seconds() / 3600
    assert cal.business_hours_between(end, start) == -got


@settings(max_examples=100, deadline=None)
@given(a=instants, b=instants, c=instants)
def test_additive(a: dt.datetime, b: dt.datetime, c: dt.datetime) -> None:
    cal = load_calendar(EXAMPLE)
    x, y, z = sorted((a, b, c))
    whole = cal.business_hours_between(x, z)
    parts = cal.business_hours_between(x, y) + cal.business_hours_between(y, z)
    assert whole == pytest.approx(parts, abs=1e-9)


# -- the KPI hook ---------------------------------------------------------------------------


def _ticket(created: str, responded: str) -> TicketState:
    state = TicketState("t1")
    for obj in (
        {"event_id": "c", "type": "ticket.created", "occurred_at": created, "ticket_id": "t1"},
        {
            "event_id": "r",
            "type": "ticket.first_response",
            "occurred_at": responded,
            "ticket_id": "t1",
            "specialist_id": "s1",
        },
    ):
        state.apply(validate_event_obj(obj))
    return state


def test_ticket_contributions_use_the_hours_function(cn: BusinessCalendar) -> None:
    state = _ticket("2026-03-06T17:00:00+08:00", "2026-03-09T10:00:00+08:00")
    key = ("s1", dt.date(2026, 3, 9), AVG_RESPONSE_TIME_HOURS)
    sla = ("s1", dt.date(2026, 3, 9), FIRST_RESPONSE_SLA_RATE)
    # Default unchanged: 65 calendar hours miss the 24 h SLA.
    assert ticket_contributions(state, SH) == {key: (65.0, 1), sla: (0.0, 1)}
    # Two business hours over the weekend: within the SLA, also within a 2 h one.
    assert ticket_contributions(state, SH, cn.hours_fn(SH)) == {key: (2.0, 1), sla: (1.0, 1)}
    assert ticket_contributions(state, SH, cn.hours_fn(SH), 2.0)[sla] == (1.0, 1)
    assert ticket_contributions(state, SH, cn.hours_fn(SH), 1.5)[sla] == (0.0, 1)


def test_resolution_time_in_business_hours(cn: BusinessCalendar) -> None:
    state = _ticket("2026-03-06T17:00:00+08:00", "2026-03-09T10:00:00+08:00")
    state.apply(
        validate_event_obj(
            {
                "event_id": "x",
                "type": "ticket.closed",
                "occurred_at": "2026-03-09T11:30:00+08:00",
                "ticket_id": "t1",
                "specialist_id": "s2",
                "resolved": True,
            }
        )
    )
    key = ("s2", dt.date(2026, 3, 9), RESOLUTION_TIME_HOURS)
    assert ticket_contributions(state, SH)[key] == (66.5, 1)
    assert ticket_contributions(state, SH, cn.hours_fn(SH))[key] == (3.5, 1)


def test_negative_response_still_excluded_with_a_calendar(cn: BusinessCalendar) -> None:
    state = _ticket("2026-03-09T10:00:00+08:00", "2026-03-06T17:00:00+08:00")
    assert ticket_contributions(state, SH, cn.hours_fn(SH)) == {}
    assert data_quality_issues(state) == [NEGATIVE_RESPONSE_TIME]


# -- long spans: inner days counted arithmetically -----------------------------------------


def days_model(cal: BusinessCalendar, lo: dt.date, hi: dt.date) -> int:
    return sum(cal.is_workday(lo + dt.timedelta(days=n)) for n in range((hi - lo).days + 1))


@settings(max_examples=200, deadline=None)
@given(
    lo=st.dates(dt.date(2025, 11, 1), dt.date(2027, 2, 1)),
    span=st.integers(-3, 500),
)
def test_workdays_between_matches_a_day_loop(lo: dt.date, span: int) -> None:
    cal = load_calendar(EXAMPLE)
    hi = lo + dt.timedelta(days=span)
    assert cal.workdays_between(lo, hi) == (days_model(cal, lo, hi) if span >= 0 else 0)


@settings(max_examples=50, deadline=None)
@given(
    start=st.integers(0, 365 * 24 * 4).map(
        lambda q: at(2025, 12, 1) + dt.timedelta(minutes=15 * q)
    ),
    hours=st.integers(62 * 24, 400 * 24),
)
def test_long_spans_equal_the_day_by_day_sum(start: dt.datetime, hours: int) -> None:
    cal = load_calendar(EXAMPLE)
    end = start + dt.timedelta(hours=hours)
    # Reference: the same span cut into pieces shorter than the arithmetic threshold.
    total, t = 0.0, start
    while t < end:
        nxt = min(end, t + dt.timedelta(days=30))
        total += cal.business_hours_between(t, nxt)
        t = nxt
    assert cal.business_hours_between(start, end) == pytest.approx(total, abs=1e-6)


def test_a_response_decades_later_is_cheap(cn: BusinessCalendar) -> None:
    hours = cn.business_hours_between(at(1990, 1, 1, 9), at(2026, 3, 9, 10))
    assert 36 * 250 * 8 < hours < 37 * 262 * 8  # ~261 weekdays a year, 8 h each
