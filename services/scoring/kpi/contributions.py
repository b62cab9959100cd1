"""Contributions: what tickets, sessions and single events add to the per-day buckets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, tzinfo
from typing import Final, TypeAlias

from services.scoring.kpi.lines import EPSILON
from services.scoring.kpi.ticket import TicketState, first_created
from services.scoring.kpi.training import TrainingSession
from services.scoring.kpi.windows import local_day
from shared.catalogue import (
    AVG_RESPONSE_TIME_HOURS,
    COLLABORATION_SCORE,
    CUSTOMER_SATISFACTION,
    FIRST_RESPONSE_SLA_RATE,
    FOLLOWUP_RATE,
    NPS,
    RECORD_ACCURACY,
    REOPEN_RATE,
    RESOLUTION_RATE,
    RESOLUTION_TIME_HOURS,
    TRAINING_SESSIONS,
)
from shared.events import Event, RecordAudited, SurveyCsat, SurveyNps, SurveyPeerReview

# (specialist_id, local date, metric) -> (numerator, denominator)
ContributionKey: TypeAlias = tuple[str, date, str]
Contributions: TypeAlias = dict[ContributionKey, tuple[float, int]]

NEGATIVE_RESPONSE_TIME: Final = "negative_response_time"
NEGATIVE_RESOLUTION_TIME: Final = "negative_resolution_time"
# KPI_SLA_FIRST_RESPONSE_HOURS when unset: a first response within a day meets the SLA.
DEFAULT_SLA_HOURS: Final = 24.0


def _add(out: Contributions, key: ContributionKey, num: float, den: int) -> None:
    old_num, old_den = out.get(key, (0.0, 0))
    out[key] = (old_num + num, old_den + den)


def merge_contributions(
    into: Contributions, delta: Mapping[ContributionKey, tuple[float, int]]
) -> None:
    """Add ``delta`` into ``into`` in place, dropping entries that cancel to zero."""
    for key, (num, den) in delta.items():
        _add(into, key, num, den)
        new_num, new_den = into[key]
        if new_den == 0 and abs(new_num) <= EPSILON:
            del into[key]


def diff_contributions(
    old: Mapping[ContributionKey, tuple[float, int]],
    new: Mapping[ContributionKey, tuple[float, int]],
) -> Contributions:
    """``new - old`` per key; keys whose numerator and denominator both stay equal are dropped."""
    out: Contributions = {}
    # A key missing on one side counts as (0.0, 0); the arithmetic is kept as written so
    # the results are the same floats as ``new - old`` with that default.
    for key, (new_num, new_den) in new.items():
        prior = old.get(key)
        old_num, old_den = (0.0, 0) if prior is None else prior
        if new_num != old_num or new_den != old_den:
            out[key] = (new_num - old_num, new_den - old_den)
    for key, (old_num, old_den) in old.items():
        if key not in new and (old_num != 0.0 or old_den != 0):
            out[key] = (0.0 - old_num, 0 - old_den)
    return out


def csat_point(score: int) -> float:
    """CSAT numerator of one survey: satisfied = score >= 4."""
    return 1.0 if score >= 4 else 0.0


def nps_point(score: int) -> float:
    """NPS numerator of one response: promoter 9-10 = +1, detractor 0-6 = -1, passive = 0."""
    if score >= 9:
        return 1.0
    return -1.0 if score <= 6 else 0.0


HoursFn: TypeAlias = Callable[[datetime, datetime], float]


def ticket_contributions(
    state: TicketState,
    tz: tzinfo,
    hours_fn: HoursFn | None = None,
    sla_hours: float = DEFAULT_SLA_HOURS,
) -> Contributions:
    """What one ticket adds to the day buckets, from its state alone (order-independent).

    ``hours_fn(start, end)`` replaces calendar hours as the response and resolution times
    (a business calendar); exclusion of negative durations still uses calendar hours. A
    first response within ``sla_hours`` (of the same hours) meets the first-response SLA.
    """
    return _ticket_contributions(
        state, tz, hours_fn, sla_hours, state.response_hours(), state.resolution_hours()
    )


def ticket_contributions_and_issues(
    state: TicketState,
    tz: tzinfo,
    hours_fn: HoursFn | None = None,
    sla_hours: float = DEFAULT_SLA_HOURS,
) -> tuple[Contributions, list[str]]:
    """``(ticket_contributions(...), data_quality_issues(state))``, measuring times once."""
    hours = state.response_hours()
    resolution = state.resolution_hours()
    issues = _issues(hours, resolution)
    return _ticket_contributions(state, tz, hours_fn, sla_hours, hours, resolution), issues


def _issues(response: float | None, resolution: float | None) -> list[str]:
    issues = [NEGATIVE_RESPONSE_TIME] if response is not None and response < 0 else []
    if resolution is not None and resolution < 0:
        issues.append(NEGATIVE_RESOLUTION_TIME)
    return issues


def _ticket_contributions(
    state: TicketState,
    tz: tzinfo,
    hours_fn: HoursFn | None,
    sla_hours: float,
    hours: float | None,
    resolution: float | None,
) -> Contributions:
    out: Contributions = {}
    # The closure and response entries have distinct metrics, so they are set directly;
    # ``0.0 + x`` keeps the floats _add would produce (e.g. -0.0 becomes 0.0).
    closure = state.counted_closure()
    if closure is not None:
        who = closure.specialist_id
        day = local_day(closure.occurred_at, tz)
        if closure.resolved:
            out[(who, day, RESOLUTION_RATE)] = (1.0, 1)
            out[(who, day, FOLLOWUP_RATE)] = (1.0 if state.followed_up else 0.0, 1)
        else:
            out[(who, day, RESOLUTION_RATE)] = (0.0, 1)
        out[(who, day, REOPEN_RATE)] = (1.0 if state.reopened_before_closure() else 0.0, 1)
        # Closed before its creation: excluded like a negative response time (an issue).
        if resolution is not None and resolution >= 0:
            if hours_fn is not None:
                resolution = hours_fn(first_created(state.created), closure.occurred_at)
            out[(who, day, RESOLUTION_TIME_HOURS)] = (0.0 + resolution, 1)
    first = state.first_response
    # Negative durations are clock or data errors: excluded, reported by data_quality_issues.
    if hours is not None and first is not None and hours >= 0 and first.specialist_id is not None:
        if hours_fn is not None:
            hours = hours_fn(first_created(state.created), first.occurred_at)
        day = local_day(first.occurred_at, tz)
        out[(first.specialist_id, day, AVG_RESPONSE_TIME_HOURS)] = (0.0 + hours, 1)
        # Within the SLA in the same hours the response time counts (inclusive).
        out[(first.specialist_id, day, FIRST_RESPONSE_SLA_RATE)] = (
            1.0 if hours <= sla_hours else 0.0,
            1,
        )
    for survey in state.surveys:
        specialist = survey.specialist_id
        if specialist is None:
            specialist = state.survey_specialist(survey.occurred_at)
        if specialist is None:
            continue  # held until an event names the ticket's specialist
        day = local_day(survey.occurred_at, tz)
        if survey.kind == "csat":
            _add(out, (specialist, day, CUSTOMER_SATISFACTION), csat_point(survey.score), 1)
        else:
            _add(out, (specialist, day, NPS), nps_point(survey.score), 1)
    return out


def data_quality_issues(state: TicketState) -> list[str]:
    """Problems in a ticket's data that KPIs had to work around."""
    return _issues(state.response_hours(), state.resolution_hours())


def simple_contributions(event: Event, tz: tzinfo) -> Contributions:
    """Contributions of an event that needs no other event; empty for ticket/session-routed ones."""
    day = local_day(event.occurred_at, tz)
    if isinstance(event, RecordAudited):
        return {(event.specialist_id, day, RECORD_ACCURACY): (1.0 if event.accurate else 0.0, 1)}
    if isinstance(event, SurveyPeerReview):
        return {(event.specialist_id, day, COLLABORATION_SCORE): (csat_point(event.score), 1)}
    # A survey naming a ticket goes to the ticket's state (it takes the ticket's channel).
    if isinstance(event, SurveyCsat) and event.specialist_id is not None and not event.ticket_id:
        return {(event.specialist_id, day, CUSTOMER_SATISFACTION): (csat_point(event.score), 1)}
    if isinstance(event, SurveyNps) and event.specialist_id is not None and not event.ticket_id:
        return {(event.specialist_id, day, NPS): (nps_point(event.score), 1)}
    return {}


def training_contributions(session: TrainingSession, tz: tzinfo) -> Contributions:
    """One session for its trainer on the local date of ``session_at`` when mean score >= 4.0."""
    if not session.feedback:
        return {}
    # Feedback events may disagree on trainer/session_at; the earliest one decides so the
    # result does not depend on arrival order.
    first = min(session.feedback, key=lambda f: f.order)
    total = sum(f.score for f in session.feedback)
    # Integer comparison (sum >= 4 * n) avoids any float rounding at exactly 4.0.
    if total < 4 * len(session.feedback):
        return {}
    return {(first.trainer, local_day(first.session_at, tz), TRAINING_SESSIONS): (1.0, 1)}
