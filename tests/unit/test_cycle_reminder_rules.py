"""The appraisal-cycle reminder rules against simple reference models: a scan on some local
days (the service may be down on others) records each reminder once per repeat period."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.appraisal.reminders import (
    FinalisedQuarter,
    GoalState,
    PlanState,
    ReminderPolicy,
    due_reminders,
    local_day,
)
from shared.reminders import NewReminder, reminder_key
from shared.settings import load_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONES = st.sampled_from(
    [dt.UTC, SHANGHAI, ZoneInfo("America/Los_Angeles"), ZoneInfo("Pacific/Kiritimati")]
)
D0 = dt.date(2026, 10, 1)
POLICIES = st.builds(
    ReminderPolicy,
    enabled=st.just(True),
    meeting_days=st.integers(0, 30),
    goal_due_days=st.integers(0, 20),
    repeat_days=st.integers(1, 15),
)
# Days (from D0) on which a scan ran; at any time of that local day.
SCAN_DAYS = st.lists(st.integers(0, 90), min_size=1, max_size=40, unique=True).map(sorted)
TIME_OF_DAY = st.integers(0, 24 * 60 - 1)
# Ids as the directory stores them: any text but lone surrogates (which PostgreSQL refuses).
STORABLE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def at_local(day: dt.date, minute: int, tz: dt.tzinfo) -> dt.datetime:
    """An aware UTC instant that is ``minute`` past local midnight of ``day`` in ``tz``."""
    local = dt.datetime.combine(day, dt.time(), tzinfo=tz) + dt.timedelta(minutes=minute)
    return local.astimezone(dt.UTC)


def simulate(
    scans: Sequence[tuple[dt.date, int]],
    tz: dt.tzinfo,
    policy: ReminderPolicy,
    state: Callable[[dt.date], tuple[list[FinalisedQuarter], list[PlanState]]],
) -> dict[str, tuple[dt.date, NewReminder]]:
    """What the table holds after scanning on those days: the first scan of each key wins."""
    table: dict[str, tuple[dt.date, NewReminder]] = {}
    for day, minute in scans:
        quarters, plans = state(day)
        for r in due_reminders(quarters, plans, at_local(day, minute, tz), tz, policy):
            table.setdefault(r.key, (day, r))
    return table


def expected_days(
    first: dt.date,
    repeat: int,
    last: dt.date | None,
    scans: Sequence[dt.date],
    holds: Callable[[dt.date], bool],
) -> list[dt.date]:
    """The reference: for each of the days first, first+R, first+2R, … (up to ``last``), the
    first scan on or after it and before the next one, if the condition holds at that scan."""
    out: list[dt.date] = []
    start = first
    end_of_scans = max(scans)
    while start <= end_of_scans and (last is None or start <= last):
        nxt = start + dt.timedelta(days=repeat)
        bound = nxt if last is None else min(nxt, last + dt.timedelta(days=1))
        inside = [d for d in scans if start <= d < bound]
        if inside and holds(inside[0]):
            out.append(inside[0])
        start = nxt
    return out


# ---------------------------------------------------------------------------
# meeting_not_held
# ---------------------------------------------------------------------------


@given(
    POLICIES,
    ZONES,
    SCAN_DAYS,
    TIME_OF_DAY,
    st.integers(0, 24 * 60 - 1),
    st.one_of(st.none(), st.integers(0, 90)),
    st.sampled_from([(), ((1, "scheduled"),), ((1, "cancelled"),)]),
)
def test_meeting_not_held_once_per_period_until_held(
    policy: ReminderPolicy,
    tz: dt.tzinfo,
    scan_days: list[int],
    minute: int,
    finalised_minute: int,
    held_day: int | None,
    before: tuple[tuple[int, str], ...],
) -> None:
    finalized_at = at_local(D0, finalised_minute, tz)
    held_on = None if held_day is None else D0 + dt.timedelta(days=held_day)

    def held(day: dt.date) -> bool:
        return held_on is not None and day >= held_on

    def state(day: dt.date) -> tuple[list[FinalisedQuarter], list[PlanState]]:
        meetings = (*before, (2, "held")) if held(day) else before
        return [FinalisedQuarter("s1", "north", "2026Q3", finalized_at, meetings)], []

    scans = [D0 + dt.timedelta(days=d) for d in scan_days]
    table = simulate([(d, minute) for d in scans], tz, policy, state)
    first = D0 + dt.timedelta(days=policy.meeting_days)
    want = expected_days(first, policy.repeat_days, None, scans, lambda d: not held(d))
    assert sorted(day for day, _ in table.values()) == want
    for day, r in table.values():
        assert (r.kind, r.specialist_id, r.team_id, r.quarter, r.due) == (
            "meeting_not_held",
            "s1",
            "north",
            "2026Q3",
            first,
        )
        assert r.subject["finalized_on"] == D0.isoformat()
        assert r.subject["days_since_finalized"] == (day - D0).days
        assert r.subject["meeting_status"] == (before[0][1] if before else "none")


def test_the_finalisation_day_is_local() -> None:
    """Finalised 17:30 UTC on 30 Sep is 1 Oct in Shanghai: N days count from 1 Oct there."""
    policy = ReminderPolicy(meeting_days=14)
    fq = FinalisedQuarter("s1", "north", "2026Q3", dt.datetime(2026, 9, 30, 17, 30, tzinfo=dt.UTC))
    assert local_day(fq.finalized_at, SHANGHAI) == D0
    # 14 Oct 23:00 local (15:00 UTC) is 13 days after: nothing; 15 Oct 00:30 local is due.
    assert due_reminders([fq], [], at_local(dt.date(2026, 10, 14), 23 * 60, SHANGHAI),
                         SHANGHAI, policy) == []  # fmt: skip
    (r,) = due_reminders([fq], [], at_local(dt.date(2026, 10, 15), 30, SHANGHAI), SHANGHAI, policy)
    assert r.due == dt.date(2026, 10, 15)
    # In UTC it was finalised on 30 Sep: due on 14 Oct.
    (r,) = due_reminders([fq], [], at_local(dt.date(2026, 10, 14), 60, dt.UTC), dt.UTC, policy)
    assert r.due == dt.date(2026, 10, 14)


def test_only_the_latest_finalised_quarter_and_only_with_a_team() -> None:
    policy = ReminderPolicy()
    at = dt.datetime(2026, 4, 1, 1, 0, tzinfo=dt.UTC)
    quarters = [
        FinalisedQuarter("s1", "north", "2025Q4", at - dt.timedelta(days=90)),
        FinalisedQuarter("s1", "north", "2026Q1", at),
        FinalisedQuarter("s2", None, "2026Q1", at),  # no team: no supervisor to tell
        FinalisedQuarter("s3", "north", "2026Q1", at, ((4, "held"), (5, "cancelled"))),
    ]
    due = due_reminders(quarters, [], at + dt.timedelta(days=30), dt.UTC, policy)
    assert [(r.specialist_id, r.quarter) for r in due] == [("s1", "2026Q1")]


# ---------------------------------------------------------------------------
# goal_due and plan_overdue
# ---------------------------------------------------------------------------

GOALS = st.lists(
    st.tuples(
        st.sampled_from(["resolution_rate", "customer_satisfaction", "training_sessions"]),
        st.integers(0, 60),  # due, days from D0
        st.one_of(st.none(), st.integers(0, 90)),  # met from this day on (None: never)
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda g: g[0],
)
UNCLOSED = st.sampled_from(["draft", "open", "on_track"])


def plan_at(
    day: dt.date,
    goals: list[tuple[str, int, int | None]],
    status: str,
    closed_day: int | None,
    team: str | None = "north",
) -> PlanState:
    closed = closed_day is not None and day >= D0 + dt.timedelta(days=closed_day)
    states = tuple(
        GoalState(
            kpi,
            0.9,
            D0 + dt.timedelta(days=due),
            "achieved" if met is not None and day >= D0 + dt.timedelta(days=met) else "behind",
            0.5,
        )
        for kpi, due, met in goals
    )
    return PlanState("s1", team, "2026Q4", "achieved" if closed else status, states)


@given(
    POLICIES,
    ZONES,
    SCAN_DAYS,
    TIME_OF_DAY,
    GOALS,
    UNCLOSED,
    st.one_of(st.none(), st.integers(0, 90)),
)
def test_goals_due_once_per_period_until_met_or_closed(
    policy: ReminderPolicy,
    tz: dt.tzinfo,
    scan_days: list[int],
    minute: int,
    goals: list[tuple[str, int, int | None]],
    status: str,
    closed_day: int | None,
) -> None:
    scans = [D0 + dt.timedelta(days=d) for d in scan_days]
    table = simulate(
        [(d, minute) for d in scans],
        tz,
        policy,
        lambda day: ([], [plan_at(day, goals, status, closed_day)]),
    )
    got = sorted((r.due, day) for day, r in table.values() if r.kind == "goal_due")
    want: list[tuple[dt.date, dt.date]] = []
    for due in sorted({D0 + dt.timedelta(days=g[1]) for g in goals}):

        def holds(day: dt.date, due: dt.date = due) -> bool:
            plan = plan_at(day, goals, status, closed_day)
            unmet = [g for g in plan.goals if g.due == due and g.status != "achieved"]
            return plan.status != "achieved" and bool(unmet)

        first = due - dt.timedelta(days=policy.goal_due_days)
        want += [(due, d) for d in expected_days(first, policy.repeat_days, due, scans, holds)]
    assert got == sorted(want)
    for day, r in table.values():
        if r.kind == "goal_due":
            assert r.due is not None and r.subject["days_left"] == (r.due - day).days
            listed = {g["kpi"] for g in r.subject["goals"]}
            plan = plan_at(day, goals, status, closed_day)
            assert listed == {
                g.kpi for g in plan.goals if g.due == r.due and g.status != "achieved"
            }


@given(
    POLICIES,
    ZONES,
    SCAN_DAYS,
    TIME_OF_DAY,
    GOALS,
    UNCLOSED,
    st.one_of(st.none(), st.integers(0, 90)),
)
def test_plan_overdue_once_per_period_until_closed(
    policy: ReminderPolicy,
    tz: dt.tzinfo,
    scan_days: list[int],
    minute: int,
    goals: list[tuple[str, int, int | None]],
    status: str,
    closed_day: int | None,
) -> None:
    scans = [D0 + dt.timedelta(days=d) for d in scan_days]
    table = simulate(
        [(d, minute) for d in scans],
        tz,
        policy,
        lambda day: ([], [plan_at(day, goals, status, closed_day)]),
    )
    got = sorted(day for day, r in table.values() if r.kind == "plan_overdue")
    last = D0 + dt.timedelta(days=max(g[1] for g in goals))

    def unclosed(day: dt.date) -> bool:
        return plan_at(day, goals, status, closed_day).status != "achieved"

    assert got == expected_days(
        last + dt.timedelta(days=1), policy.repeat_days, None, scans, unclosed
    )
    for day, r in table.values():
        if r.kind == "plan_overdue":
            assert r.due == last and r.subject["days_overdue"] == (day - last).days
            assert r.subject["plan_status"] == status


def test_a_plan_without_goals_or_team_or_closed_is_never_reminded() -> None:
    now = dt.datetime(2027, 1, 20, 3, 0, tzinfo=dt.UTC)
    goal = GoalState("resolution_rate", 0.9, dt.date(2027, 1, 22), "behind", 0.8)
    late = GoalState("followup_rate", 0.8, dt.date(2026, 12, 31), "behind", 0.5)
    plans = [
        PlanState("s1", "north", "2026Q4", "open", ()),
        PlanState("s2", None, "2026Q4", "open", (goal, late)),
        PlanState("s3", "north", "2026Q4", "achieved", (goal, late)),
        PlanState("s4", "north", "2026Q4", "missed", (goal, late)),
        PlanState("s5", "north", "2026Q4", "on_track", (goal, late)),
    ]
    due = due_reminders([], plans, now, dt.UTC, ReminderPolicy())
    # s5's late goal does not make the plan overdue while another goal is still ahead.
    assert [(r.kind, r.specialist_id) for r in due] == [("goal_due", "s5")]
    (r,) = due
    assert r.subject["goals"] == [
        {"kpi": "resolution_rate", "target": 0.9, "due": "2027-01-22", "value": 0.8,
         "status": "behind"}
    ]  # fmt: skip


# ---------------------------------------------------------------------------
# Off, settings, keys
# ---------------------------------------------------------------------------


@given(POLICIES, ZONES, SCAN_DAYS, GOALS)
def test_nothing_when_reminders_are_off(
    policy: ReminderPolicy,
    tz: dt.tzinfo,
    scan_days: list[int],
    goals: list[tuple[str, int, int | None]],
) -> None:
    off = ReminderPolicy(False, policy.meeting_days, policy.goal_due_days, policy.repeat_days)
    fq = FinalisedQuarter("s1", "north", "2026Q3", at_local(D0, 0, tz))
    for d in scan_days:
        day = D0 + dt.timedelta(days=d)
        now = at_local(day, 600, tz)
        plan = plan_at(day, goals, "open", None)
        assert due_reminders([fq], [plan], now, tz, off) == []


def test_policy_from_settings_and_its_bounds() -> None:
    assert ReminderPolicy.from_settings(load_settings()) == ReminderPolicy(True, 14, 7, 7)
    custom = load_settings(
        reminders_enabled=False,
        reminder_meeting_days=3,
        reminder_goal_due_days=0,
        reminder_repeat_days=2,
        reminder_scan_seconds="15m",
    )
    assert ReminderPolicy.from_settings(custom) == ReminderPolicy(False, 3, 0, 2)
    assert custom.reminder_scan_seconds == 900.0
    with pytest.raises(ValueError, match="repeat_days"):
        ReminderPolicy(repeat_days=0)


@given(
    st.lists(
        st.tuples(STORABLE.filter(bool), STORABLE, st.integers(0, 9)),
        min_size=2,
        max_size=10,
        unique=True,
    )
)
def test_keys_never_collide_whatever_the_ids(parts: list[tuple[str, str, int]]) -> None:
    keys = {reminder_key("goal_due", sid, q, period) for sid, q, period in parts}
    assert len(keys) == len(parts)
    for sid, q, period in parts:
        assert json.loads(reminder_key("goal_due", sid, q, period)) == [
            "goal_due",
            sid,
            q,
            str(period),
        ]
