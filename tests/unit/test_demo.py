"""The demo generator: valid, realistic, deterministic events with the designed behaviours."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi.demo import ARCHETYPES, DemoGenerator, Emit, build_roster, iter_kinds
from services.scoring.kpi.grading import evaluate
from services.scoring.kpi.lines import DEFAULT_LINES
from services.scoring.kpi.windows import parse_window
from shared.events import InvalidEvent, decode_event
from tests.reference import reference_sums

NOW = dt.datetime(2026, 5, 20, 9, 30, tzinfo=dt.UTC)
TZ = ZoneInfo("Asia/Shanghai")


def decoded(emits: list[Emit]) -> list:  # type: ignore[type-arg]
    return [decode_event(e.value) for e in emits if not e.malformed]


def test_roster_has_teams_supervisors_and_distinct_people() -> None:
    roster = build_roster(4, 32, seed=3)
    assert len(roster.teams) == 4 and len(roster.specialists) == 32
    assert len({s.id for s in roster.specialists}) == 32
    assert len({s.name for s in roster.specialists}) == 32
    assert all(t.supervisor.startswith("sup-") for t in roster.teams)
    for team in roster.teams:
        kinds = {s.behaviour.archetype for s in roster.team_members(team.id)}
        # Every team has a specialist designed to fall below the lines during the live demo.
        assert "declining" in kinds and len(roster.team_members(team.id)) == 8
    assert {s.behaviour.archetype for s in roster.specialists} == set(ARCHETYPES)
    with pytest.raises(ValueError, match="teams"):
        build_roster(0, 5)
    with pytest.raises(ValueError, match="specialists"):
        build_roster(4, 3)


def test_backfill_is_valid_complete_and_in_the_past() -> None:
    roster = build_roster(2, 12, seed=1)
    emits = DemoGenerator(roster, seed=1, run_id="t", tz=TZ, malformed_ratio=0.01).backfill(30, NOW)
    events = decoded(emits)
    assert all(e.occurred_at <= NOW for e in events)
    assert min(e.occurred_at for e in events) >= NOW - dt.timedelta(days=30)
    kinds = Counter(iter_kinds(emits))
    for kind in (
        "ticket.created", "ticket.assigned", "ticket.first_response", "ticket.closed",
        "ticket.reopened", "ticket.followup", "record.audited", "survey.csat", "survey.nps",
        "survey.peer_review", "survey.training",
    ):  # fmt: skip
        assert kinds[kind] > 0, kind
    # Reopen chains: some ticket is closed, reopened and closed again.
    closes = Counter(e.ticket_id for e in events if e.type == "ticket.closed")
    assert max(closes.values()) >= 2
    # Malformed messages are really invalid (they must end in the dead-letter topic).
    bad = [e for e in emits if e.malformed]
    assert 0 < len(bad) < len(emits) * 0.03
    for e in bad:
        with pytest.raises(InvalidEvent):
            decode_event(e.value)
    # Keys: ticket events by ticket id, so a ticket's life stays on one partition.
    for e in emits:
        if not e.malformed and b'"ticket_id"' in e.value:
            assert e.key == json.loads(e.value)["ticket_id"].encode()
    assert {e.kind for e in emits} == {"tickets", "surveys"}
    assert len({ev.event_id for ev in events}) == len(events)


def test_same_seed_and_run_give_the_same_stream() -> None:
    roster = build_roster(1, 4, seed=5)
    a = DemoGenerator(roster, seed=5, run_id="r").backfill(5, NOW)
    b = DemoGenerator(roster, seed=5, run_id="r").backfill(5, NOW)
    c = DemoGenerator(roster, seed=5, run_id="other").backfill(5, NOW)
    assert a == b
    assert a != c


def _kpi(events: list, specialist: str, metric: str, window: str = "30d") -> tuple:  # type: ignore[type-arg]
    win = parse_window(window, NOW.astimezone(TZ).date())
    num, den = 0.0, 0
    for (who, day, m), (n, d) in reference_sums(events, TZ).items():
        if who == specialist and m == metric and win.start <= day <= win.end:
            num, den = num + n, den + d
    value = evaluate(metric, num, den, DEFAULT_LINES[metric], win)
    return value.value, value.grade


def test_archetypes_score_as_designed_through_the_reference_model() -> None:
    roster = build_roster(1, 12, seed=11)
    events = decoded(DemoGenerator(roster, seed=11, run_id="a", tz=TZ).backfill(60, NOW))
    by_kind = {s.behaviour.archetype: s.id for s in roster.specialists}
    assert _kpi(events, by_kind["star"], "customer_satisfaction")[1] == "excellent"
    assert _kpi(events, by_kind["slow_responder"], "avg_response_time_hours")[1] == "unqualified"
    assert _kpi(events, by_kind["unhappy_customers"], "customer_satisfaction")[1] == "unqualified"
    assert _kpi(events, by_kind["no_followup"], "followup_rate")[1] == "unqualified"
    assert _kpi(events, by_kind["sloppy_records"], "record_accuracy")[1] == "unqualified"
    assert _kpi(events, by_kind["newcomer"], "resolution_rate")[1] == "insufficient_data"
    assert _kpi(events, by_kind["declining"], "customer_satisfaction")[1] != "unqualified"


def test_decliners_fall_below_the_line_in_live_mode() -> None:
    roster = build_roster(1, 12, seed=11)
    gen = DemoGenerator(roster, seed=11, run_id="l", tz=TZ, malformed_ratio=0)
    history = decoded(gen.backfill(60, NOW))
    decliner = next(s.id for s in roster.specialists if s.behaviour.archetype == "declining")
    live: list = []  # type: ignore[type-arg]
    for minute in range(6):  # six minutes at ~20 events/s
        live += decoded(gen.live(NOW + dt.timedelta(minutes=minute), 1200))
    assert all(e.occurred_at <= NOW + dt.timedelta(minutes=6) for e in live)
    later = NOW + dt.timedelta(minutes=6)
    assert later.date() == NOW.date()
    value, grade = _kpi(history + live, decliner, "customer_satisfaction")
    assert grade == "unqualified", value


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 200))
def test_live_batches_are_valid_recent_and_about_the_size_asked(seed: int, n: int) -> None:
    roster = build_roster(2, 6, seed=seed)
    emits = DemoGenerator(roster, seed=seed, run_id="h", malformed_ratio=0).live(NOW, n)
    events = decoded(emits)
    assert n <= len(events) <= n + 20  # whole ticket lives, so it may overshoot a little
    assert all(NOW - dt.timedelta(days=25) <= e.occurred_at <= NOW + dt.timedelta(minutes=1)
               for e in events)  # fmt: skip
