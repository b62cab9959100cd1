"""Plain from-scratch reference model of SPEC §3, used to cross-check the scoring code.

It deliberately shares no logic with ``services.scoring.kpi``: it takes the whole list of
events at once, de-duplicates by ``event_id`` (first occurrence wins, like the database),
and recomputes every (specialist, local date, metric) bucket with simple loops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, tzinfo
from typing import Any, Protocol

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

METRICS = (
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
SLA_HOURS = 24.0
Hours = Callable[[datetime, datetime], float]

Key = tuple[str, date, str]
Sums = dict[Key, tuple[float, int]]


class _WindowLike(Protocol):
    @property
    def start(self) -> date: ...
    @property
    def end(self) -> date: ...


def dedup(events: Iterable[Event]) -> list[Event]:
    """Keep the first event seen for every event_id, in arrival order."""
    seen: set[str] = set()
    kept: list[Event] = []
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        kept.append(event)
    return kept


def _day(ts: datetime, tz: tzinfo) -> date:
    return ts.astimezone(tz).date()


def _bump(sums: Sums, specialist: str, day: date, metric: str, num: float) -> None:
    key = (specialist, day, metric)
    old_num, old_den = sums.get(key, (0.0, 0))
    sums[key] = (old_num + num, old_den + 1)


_TICKET_TYPES = (
    TicketCreated,
    TicketAssigned,
    TicketFirstResponse,
    TicketClosed,
    TicketReopened,
    TicketFollowup,
)


def _csat(score: int) -> float:
    return 1.0 if score >= 4 else 0.0


def _nps(score: int) -> float:
    if score >= 9:
        return 1.0
    if score <= 6:
        return -1.0
    return 0.0


def _later(a: Any, b: Any) -> bool:
    """True when event a comes after event b: by instant, then by larger event_id."""
    if a.occurred_at != b.occurred_at:
        return bool(a.occurred_at > b.occurred_at)
    return bool(a.event_id > b.event_id)


def _owner_rank(e: Any) -> tuple[datetime, int, str]:
    # created < assigned at the same instant: the assignment is the newer fact.
    return (e.occurred_at, 1 if isinstance(e, TicketAssigned) else 0, e.event_id)


def _survey_owner(ticket_events: list[Event], at: datetime) -> str | None:
    # 1. the latest closure at or before the survey, reopened or not
    best_close = None
    for e in ticket_events:
        if (
            isinstance(e, TicketClosed)
            and e.occurred_at <= at
            and (best_close is None or _later(e, best_close))
        ):
            best_close = e
    if best_close is not None:
        assert isinstance(best_close, TicketClosed)
        return best_close.specialist_id
    # 2. the latest created/assigned naming a specialist at or before it
    owners = [
        e
        for e in ticket_events
        if isinstance(e, TicketCreated | TicketAssigned) and e.specialist_id is not None
    ]
    latest = None
    for e in owners:
        if e.occurred_at <= at and (latest is None or _owner_rank(e) > _owner_rank(latest)):
            latest = e
    if latest is not None:
        return latest.specialist_id
    # 3. the earliest such event at all
    earliest = None
    for e in owners:
        if earliest is None or _owner_rank(e) < _owner_rank(earliest):
            earliest = e
    if earliest is not None:
        return earliest.specialist_id
    return None  # held


def _hours(start: datetime, end: datetime, hours_fn: Hours | None) -> float:
    if hours_fn is not None:
        return hours_fn(start, end)
    return (end - start).total_seconds() / 3600.0


def reference_sums(
    events: Iterable[Event],
    tz: tzinfo,
    hours_fn: Hours | None = None,
    sla_hours: float = SLA_HOURS,
) -> Sums:
    """Every (specialist, local date, metric) -> (numerator, denominator) from SPEC §3 and
    §3a; ``hours_fn`` stands for a business calendar, ``sla_hours`` for the SLA setting."""
    unique = dedup(events)
    sums: Sums = {}

    tickets: dict[str, list[Event]] = {}
    sessions: dict[str, list[SurveyTraining]] = {}
    for e in unique:
        if isinstance(e, _TICKET_TYPES):
            tickets.setdefault(e.ticket_id, []).append(e)
        elif isinstance(e, SurveyCsat | SurveyNps) and e.specialist_id is None:
            assert e.ticket_id is not None
            tickets.setdefault(e.ticket_id, []).append(e)
        elif isinstance(e, SurveyTraining):
            sessions.setdefault(e.session_id, []).append(e)
        elif isinstance(e, RecordAudited):
            _bump(
                sums,
                e.specialist_id,
                _day(e.occurred_at, tz),
                "record_accuracy",
                1.0 if e.accurate else 0.0,
            )
        elif isinstance(e, SurveyPeerReview):
            _bump(
                sums,
                e.specialist_id,
                _day(e.occurred_at, tz),
                "collaboration_score",
                _csat(e.score),
            )
        elif isinstance(e, SurveyCsat):
            assert e.specialist_id is not None
            _bump(
                sums,
                e.specialist_id,
                _day(e.occurred_at, tz),
                "customer_satisfaction",
                _csat(e.score),
            )
        elif isinstance(e, SurveyNps):
            assert e.specialist_id is not None
            _bump(sums, e.specialist_id, _day(e.occurred_at, tz), "nps", _nps(e.score))

    for ticket_events in tickets.values():
        created_at = None
        for e in ticket_events:
            if isinstance(e, TicketCreated) and (created_at is None or e.occurred_at < created_at):
                created_at = e.occurred_at
        # Closure: the latest ticket.closed, unless some reopen is strictly later.
        last_close = None
        for e in ticket_events:
            if isinstance(e, TicketClosed) and (last_close is None or _later(e, last_close)):
                last_close = e
        if last_close is not None:
            assert isinstance(last_close, TicketClosed)
            reopened_after = False
            for e in ticket_events:
                if isinstance(e, TicketReopened) and e.occurred_at > last_close.occurred_at:
                    reopened_after = True
            if not reopened_after:
                who = last_close.specialist_id
                day = _day(last_close.occurred_at, tz)
                _bump(sums, who, day, "resolution_rate", 1.0 if last_close.resolved else 0.0)
                if last_close.resolved:
                    has_followup = any(isinstance(e, TicketFollowup) for e in ticket_events)
                    _bump(sums, who, day, "followup_rate", 1.0 if has_followup else 0.0)
                reopened_before = False
                for e in ticket_events:
                    if isinstance(e, TicketReopened) and e.occurred_at < last_close.occurred_at:
                        reopened_before = True
                _bump(sums, who, day, "reopen_rate", 1.0 if reopened_before else 0.0)
                if created_at is not None and last_close.occurred_at >= created_at:
                    _bump(
                        sums,
                        who,
                        day,
                        "resolution_time_hours",
                        _hours(created_at, last_close.occurred_at, hours_fn),
                    )

        # Response time: earliest first response minus earliest creation.
        first = None
        for e in ticket_events:
            if isinstance(e, TicketFirstResponse) and (first is None or not _later(e, first)):
                first = e
        if created_at is not None and first is not None:
            assert isinstance(first, TicketFirstResponse)
            seconds = (first.occurred_at - created_at).total_seconds()
            if seconds >= 0:
                hours = _hours(created_at, first.occurred_at, hours_fn)
                day = _day(first.occurred_at, tz)
                _bump(sums, first.specialist_id, day, "avg_response_time_hours", hours)
                met = 1.0 if hours <= sla_hours else 0.0
                _bump(sums, first.specialist_id, day, "first_response_sla_rate", met)

        # Surveys naming only the ticket.
        for e in ticket_events:
            if isinstance(e, SurveyCsat | SurveyNps):
                who_rated = _survey_owner(ticket_events, e.occurred_at)
                if who_rated is None:
                    continue
                if isinstance(e, SurveyCsat):
                    _bump(
                        sums,
                        who_rated,
                        _day(e.occurred_at, tz),
                        "customer_satisfaction",
                        _csat(e.score),
                    )
                else:
                    _bump(sums, who_rated, _day(e.occurred_at, tz), "nps", _nps(e.score))

    for feedback in sessions.values():
        first_fb = feedback[0]
        for f in feedback:
            if not _later(f, first_fb):
                first_fb = f
        total = 0
        for f in feedback:
            total += f.score
        if total / len(feedback) >= 4.0:
            _bump(
                sums,
                first_fb.specialist_id,
                _day(first_fb.session_at, tz),
                "training_sessions",
                1.0,
            )
    return sums


def reference_window(
    events: Iterable[Event],
    tz: tzinfo,
    specialist: str,
    window: _WindowLike,
    hours_fn: Hours | None = None,
    sla_hours: float = SLA_HOURS,
) -> dict[str, tuple[float, int]]:
    """(numerator, denominator) of every metric for one specialist over a window's dates."""
    totals: dict[str, tuple[float, int]] = {m: (0.0, 0) for m in METRICS}
    for (who, day, metric), (num, den) in reference_sums(events, tz, hours_fn, sla_hours).items():
        if who == specialist and window.start <= day <= window.end:
            old_num, old_den = totals[metric]
            totals[metric] = (old_num + num, old_den + den)
    return totals


def reference_negative_response(events: Iterable[Event]) -> set[str]:
    """Sources (``ticket:<id>``) whose earliest first response precedes their creation."""
    events = list(events)
    out: set[str] = set()
    for ticket_id in {getattr(e, "ticket_id", None) for e in events} - {None}:
        created = [
            e.occurred_at
            for e in events
            if isinstance(e, TicketCreated) and e.ticket_id == ticket_id
        ]
        firsts = sorted(
            (e.occurred_at, e.event_id)
            for e in events
            if isinstance(e, TicketFirstResponse) and e.ticket_id == ticket_id
        )
        if created and firsts and firsts[0][0] < min(created):
            out.add(f"ticket:{ticket_id}")
    return out


# -- issue 17: per-channel breakdown -----------------------------------------------------

BROKEN_DOWN = (
    "customer_satisfaction",
    "resolution_rate",
    "avg_response_time_hours",
    "followup_rate",
    "resolution_time_hours",
    "first_response_sla_rate",
    "reopen_rate",
)
ChannelKey = tuple[str, date, str, str]


def reference_channel(ticket_events: list[Event]) -> str:
    """The earliest ticket.created (instant, then event_id) naming a non-blank channel,
    trimmed and cut to 64 characters; "unknown" when none does."""
    best = None
    for e in ticket_events:
        named = isinstance(e, TicketCreated) and e.channel is not None and e.channel.strip()
        if named and (best is None or _later(best, e)):
            best = e
    if best is None:
        return "unknown"
    assert isinstance(best, TicketCreated) and best.channel is not None
    return best.channel.strip()[:64]


def reference_channel_sums(
    events: Iterable[Event], tz: tzinfo
) -> dict[ChannelKey, tuple[float, int]]:
    """The reference model's buckets of the broken-down metrics, grouped by ticket channel:
    each ticket's events (surveys naming it included) scored alone under its channel, every
    other event under "unknown"."""
    unique = dedup(events)
    groups: dict[str, list[Event]] = {}
    rest: list[Event] = []
    for e in unique:
        ticket_id = getattr(e, "ticket_id", None)
        if ticket_id is not None and isinstance(e, (*_TICKET_TYPES, SurveyCsat, SurveyNps)):
            groups.setdefault(ticket_id, []).append(e)
        else:
            rest.append(e)
    out: dict[ChannelKey, tuple[float, int]] = {}
    parts = [(reference_channel(g), g) for g in groups.values()] + [("unknown", rest)]
    for channel, group in parts:
        for (who, day, metric), (num, den) in reference_sums(group, tz).items():
            if metric in BROKEN_DOWN:
                key = (who, day, metric, channel)
                old = out.get(key, (0.0, 0))
                out[key] = (old[0] + num, old[1] + den)
    return out


def reference_negative_resolution(events: Iterable[Event]) -> set[str]:
    """Sources (``ticket:<id>``) whose counted closure precedes their earliest creation."""
    events = list(events)
    out: set[str] = set()
    for ticket_id in {getattr(e, "ticket_id", None) for e in events} - {None}:
        mine = [e for e in events if getattr(e, "ticket_id", None) == ticket_id]
        created = [e.occurred_at for e in mine if isinstance(e, TicketCreated)]
        closes = sorted((e.occurred_at, e.event_id) for e in mine if isinstance(e, TicketClosed))
        if not created or not closes:
            continue
        last = closes[-1][0]
        if any(isinstance(e, TicketReopened) and e.occurred_at > last for e in mine):
            continue
        if last < min(created):
            out.add(f"ticket:{ticket_id}")
    return out
