"""Pure appraisal-cycle reminder rules: which reminders are due on a local day (no I/O).

Three reminders, each repeated at most every ``repeat_days`` while its condition holds (the
key names the repeat period, so recording it again in the same period adds nothing):

- ``meeting_not_held``: the specialist's latest finalised quarter has no held feedback
  meeting ``meeting_days`` after the local day it was finalised;
- ``goal_due``: goals of an unclosed plan (draft, open, on track) not met yet and due within
  ``goal_due_days`` (one reminder per plan and due date);
- ``plan_overdue``: an unclosed plan whose goals' due dates have all passed.

Only specialists with a team are reminded: a team is where the supervisor is reached.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from services.scoring.appraisal.cycle import HELD, NO_MEETING, quarter_meeting
from shared.reminders import (
    GOAL_DUE,
    MEETING_NOT_HELD,
    PLAN_OVERDUE,
    NewReminder,
    ReminderKind,
    reminder_key,
)
from shared.settings import Settings

# Plans people have not closed yet: achieved and missed ones are never reminded.
UNCLOSED_PLAN_STATUSES: Final = ("draft", "open", "on_track")
ACHIEVED: Final = "achieved"


@dataclass(frozen=True)
class ReminderPolicy:
    """KPI_REMINDER_* settings: when each reminder is first due and how often it repeats."""

    enabled: bool = True
    meeting_days: int = 14
    goal_due_days: int = 7
    repeat_days: int = 7

    def __post_init__(self) -> None:
        if self.repeat_days < 1 or self.meeting_days < 0 or self.goal_due_days < 0:
            raise ValueError("repeat_days >= 1, meeting_days >= 0 and goal_due_days >= 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> ReminderPolicy:
        return cls(
            enabled=settings.reminders_enabled,
            meeting_days=settings.reminder_meeting_days,
            goal_due_days=settings.reminder_goal_due_days,
            repeat_days=settings.reminder_repeat_days,
        )


@dataclass(frozen=True)
class FinalisedQuarter:
    """A specialist's finalised appraisal and the meetings linked to its quarter."""

    specialist_id: str
    team_id: str | None
    quarter: str
    finalized_at: dt.datetime
    meetings: tuple[tuple[int, str], ...] = ()  # (id, status)


@dataclass(frozen=True)
class GoalState:
    """A plan goal and where it stands (``status`` from live KPIs; None: not measured)."""

    kpi: str
    target: float
    due: dt.date
    status: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class PlanState:
    specialist_id: str
    team_id: str | None
    quarter: str
    status: str
    goals: tuple[GoalState, ...]


def local_day(moment: dt.datetime, tz: dt.tzinfo) -> dt.date:
    """The organisation's local date of an aware time (KPI_TIMEZONE)."""
    if moment.utcoffset() is None:
        raise ValueError("an aware datetime is needed")
    return moment.astimezone(tz).date()


def repeat_period(first: dt.date, today: dt.date, repeat_days: int) -> int | None:
    """Which repeat period ``today`` falls in, counting from the first day a reminder is due
    (0 from ``first`` on, 1 after ``repeat_days`` more days…); None before ``first``."""
    if today < first:
        return None
    return (today - first).days // repeat_days


def goal_window(today: dt.date, policy: ReminderPolicy) -> tuple[dt.date, dt.date]:
    """Due dates whose goals are reminded today (both ends included): measure only those."""
    return today, today + dt.timedelta(days=policy.goal_due_days)


def latest_finalised(quarters: Iterable[FinalisedQuarter]) -> list[FinalisedQuarter]:
    """Each specialist's latest finalised quarter: a newer finalisation supersedes the
    reminder about an older quarter's meeting."""
    latest: dict[str, FinalisedQuarter] = {}
    for fq in quarters:
        seen = latest.get(fq.specialist_id)
        if seen is None or fq.quarter > seen.quarter:
            latest[fq.specialist_id] = fq
    return [latest[k] for k in sorted(latest)]


def meeting_reminders(
    quarters: Iterable[FinalisedQuarter], today: dt.date, tz: dt.tzinfo, policy: ReminderPolicy
) -> list[NewReminder]:
    out: list[NewReminder] = []
    for fq in latest_finalised(quarters):
        if fq.team_id is None:
            continue
        chosen = quarter_meeting(fq.meetings)
        status = NO_MEETING if chosen is None else chosen[1]
        if status == HELD:
            continue
        finalised_on = local_day(fq.finalized_at, tz)
        due = finalised_on + dt.timedelta(days=policy.meeting_days)
        period = repeat_period(due, today, policy.repeat_days)
        if period is None:
            continue
        out.append(
            NewReminder(
                key=reminder_key(MEETING_NOT_HELD, fq.specialist_id, fq.quarter, period),
                kind=MEETING_NOT_HELD,
                specialist_id=fq.specialist_id,
                team_id=fq.team_id,
                quarter=fq.quarter,
                due=due,
                subject={
                    "finalized_on": finalised_on.isoformat(),
                    "days_since_finalized": (today - finalised_on).days,
                    "meeting_status": status,
                },
            )
        )
    return out


def _goal_json(goal: GoalState, *, progress: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"kpi": goal.kpi, "target": goal.target, "due": goal.due.isoformat()}
    if progress:
        out.update(value=goal.value, status=goal.status)
    return out


def _plan_reminder(
    kind: ReminderKind, plan: PlanState, due: dt.date, period: int, subject: dict[str, Any]
) -> NewReminder:
    """A plan's reminder about the goals due on ``due``: keyed by plan, date and period."""
    return NewReminder(
        key=reminder_key(kind, plan.specialist_id, plan.quarter, due.isoformat(), period),
        kind=kind,
        specialist_id=plan.specialist_id,
        team_id=plan.team_id,
        quarter=plan.quarter,
        due=due,
        subject={"plan_status": plan.status, **subject},
    )


def _unclosed(plans: Iterable[PlanState]) -> Iterable[PlanState]:
    return (p for p in plans if p.team_id is not None and p.status in UNCLOSED_PLAN_STATUSES)


def goal_reminders(
    plans: Iterable[PlanState], today: dt.date, policy: ReminderPolicy
) -> list[NewReminder]:
    lo, hi = goal_window(today, policy)
    out: list[NewReminder] = []
    for plan in _unclosed(plans):
        by_due: dict[dt.date, list[GoalState]] = {}
        for goal in plan.goals:
            if lo <= goal.due <= hi and goal.status != ACHIEVED:
                by_due.setdefault(goal.due, []).append(goal)
        for due in sorted(by_due):
            first = due - dt.timedelta(days=policy.goal_due_days)
            period = repeat_period(first, today, policy.repeat_days)
            assert period is not None  # due - goal_due_days <= today: the window says so
            goals = sorted(by_due[due], key=lambda g: g.kpi)
            subject = {
                "days_left": (due - today).days,
                "goals": [_goal_json(g, progress=True) for g in goals],
            }
            out.append(_plan_reminder(GOAL_DUE, plan, due, period, subject))
    return out


def overdue_reminders(
    plans: Iterable[PlanState], today: dt.date, policy: ReminderPolicy
) -> list[NewReminder]:
    out: list[NewReminder] = []
    for plan in _unclosed(plans):
        if not plan.goals:
            continue
        last = max(g.due for g in plan.goals)
        period = repeat_period(last + dt.timedelta(days=1), today, policy.repeat_days)
        if period is None:
            continue
        goals = sorted(plan.goals, key=lambda g: (g.due, g.kpi))
        subject = {
            "days_overdue": (today - last).days,
            "goals": [_goal_json(g, progress=False) for g in goals],
        }
        out.append(_plan_reminder(PLAN_OVERDUE, plan, last, period, subject))
    return out


def due_reminders(
    quarters: Sequence[FinalisedQuarter],
    plans: Sequence[PlanState],
    now: dt.datetime,
    tz: dt.tzinfo,
    policy: ReminderPolicy,
) -> list[NewReminder]:
    """Every reminder due at ``now`` (local day in ``tz``); none when reminders are off."""
    if not policy.enabled:
        return []
    today = local_day(now, tz)
    return [
        *meeting_reminders(quarters, today, tz, policy),
        *goal_reminders(plans, today, policy),
        *overdue_reminders(plans, today, policy),
    ]
