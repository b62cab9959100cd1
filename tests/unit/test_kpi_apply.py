"""kpi.apply against the reference model: batches applied to stored state kept in memory."""

from __future__ import annotations

import random
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.generator import HistoryMaker, deliveries
from services.scoring.kpi.apply import (
    MEASURES_MARK,
    STORED_RESOLUTION_HOURS,
    STORED_SLA_MET,
    Applied,
    Deltas,
    apply_events,
    remeasure_tickets,
    route,
)
from services.scoring.kpi.contributions import NEGATIVE_RESOLUTION_TIME, NEGATIVE_RESPONSE_TIME
from services.scoring.kpi.measure import Measure
from shared.catalogue import MEASURE_KEYS
from shared.events import Event
from tests.reference import (
    reference_negative_resolution,
    reference_negative_response,
    reference_sums,
)

NY = ZoneInfo("America/New_York")
SH = ZoneInfo("Asia/Shanghai")
Sums = dict[Any, tuple[float, int]]


def calendar_hours(start: datetime, end: datetime) -> float:
    """A "business calendar" that counts every hour: the aggregates must equal calendar hours."""
    return (end - start).total_seconds() / 3600.0


def slow_hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 7200.0


class Store:
    """What PostgreSQL holds for the engine: state documents (as JSON), buckets, facts, issues."""

    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.daily: Sums = {}
        self.facts: Sums = {}
        self.issues: set[tuple[str, str]] = set()
        self.seen: set[str] = set()

    def apply(self, batch: list[Event], measure: Measure) -> Applied:
        fresh = []
        for event in batch:  # claims: the first occurrence of an id wins, in arrival order
            if event.event_id not in self.seen:
                self.seen.add(event.event_id)
                fresh.append(event)
        routed = route(fresh)
        applied = apply_events(
            routed,
            {t: self.tickets.get(t, {}) for t in routed.tickets},
            {s: self.sessions.get(s, {}) for s in routed.sessions},
            measure,
        )
        self.tickets.update({k: orjson.loads(v) for k, v in applied.tickets.items()})
        self.sessions.update({k: orjson.loads(v) for k, v in applied.sessions.items()})
        self.write(applied.deltas)
        return applied

    def write(self, deltas: Deltas) -> None:
        for into, rows in ((self.daily, deltas.daily), (self.facts, deltas.facts)):
            for key, (num, den) in rows.items():
                old = into.get(key, (0.0, 0))
                into[key] = (old[0] + num, old[1] + den)
        # Facts that cancel out are deleted (float sums of hours may leave 1e-15).
        self.facts = {k: v for k, v in self.facts.items() if v[1] != 0 or abs(v[0]) >= 1e-9}
        self.issues |= set(deltas.added)
        self.issues -= set(deltas.removed)


def _nonzero(sums: Sums) -> Sums:
    return {k: v for k, v in sums.items() if v[1] != 0 or abs(v[0]) > 1e-6}


def assert_sums_equal(got: Sums, want: Sums) -> None:
    got, want = _nonzero(got), _nonzero(want)
    assert got.keys() == want.keys(), (sorted(got.keys() ^ want.keys()))[:10]
    for key, (num, den) in want.items():
        assert got[key][1] == den, (key, got[key], (num, den))
        assert got[key][0] == pytest.approx(num, abs=1e-6), (key, got[key], (num, den))


def facts_by_bucket(facts: Sums) -> Sums:
    out: Sums = {}
    for (who, metric, day, _), (num, den) in facts.items():
        old = out.get((who, day, metric), (0.0, 0))
        out[(who, day, metric)] = (old[0] + num, old[1] + den)
    return out


def run(rng: random.Random, tz: tzinfo, measure: Measure) -> tuple[Store, list[Event], list[Event]]:
    events = HistoryMaker(rng, tz).history(tickets=rng.randint(1, 8))
    delivered = deliveries(rng, events)
    store = Store()
    i = 0
    while i < len(delivered):
        n = rng.randint(1, 30)
        batch = delivered[i : i + n]
        applied = store.apply(batch, measure)
        # Only specialists whose buckets move are republished, and each of them exists.
        assert applied.affected == sorted({k[0] for k in applied.deltas.daily})
        assert set(applied.affected) <= applied.specialists
        i += n
    return store, events, delivered


def check(store: Store, events: list[Event], delivered: list[Event], measure: Measure) -> None:
    # Conflicting versions of an id: the one delivered first counts.
    want = reference_sums(delivered, measure.tz, measure.hours_fn, measure.sla_hours)
    assert_sums_equal(store.daily, want)
    assert_sums_equal(facts_by_bucket(store.facts), store.daily)
    negatives = {s for s, issue in store.issues if issue == NEGATIVE_RESPONSE_TIME}
    assert negatives == reference_negative_response(events)
    closed_early = {s for s, issue in store.issues if issue == NEGATIVE_RESOLUTION_TIME}
    assert closed_early == reference_negative_resolution(events)


# SLA lines around the generator's response times (minutes to days), so both outcomes occur.
SLAS = st.sampled_from([24.0, 0.5, 4.0, 48.0])


@settings(max_examples=150, deadline=None)
@given(
    seed=st.randoms(use_true_random=False),
    tz=st.sampled_from([NY, SH]),
    business=st.sampled_from([None, calendar_hours, slow_hours]),
    sla=SLAS,
)
def test_batches_applied_to_stored_state_equal_the_reference(
    seed: random.Random, tz: tzinfo, business: Any, sla: float
) -> None:
    measure = Measure(tz, business, sla_hours=sla)
    store, events, delivered = run(seed, tz, measure)
    check(store, events, delivered, measure)


@settings(max_examples=75, deadline=None)
@given(seed=st.randoms(use_true_random=False), tz=st.sampled_from([NY, SH]))
def test_remeasuring_moves_the_aggregates_and_back(seed: random.Random, tz: tzinfo) -> None:
    store, events, delivered = run(seed, tz, Measure(tz))
    # A calendar and a tighter SLA: the time measures and the SLA bits move...
    slow_measure = Measure(tz, slow_hours, sla_hours=0.5)
    slow = remeasure_tickets(store.tickets, slow_measure)
    store.tickets.update({k: orjson.loads(v) for k, v in slow.tickets.items()})
    store.write(slow.deltas)
    check(store, events, delivered, slow_measure)
    back = remeasure_tickets(store.tickets, Measure(tz))
    store.tickets.update({k: orjson.loads(v) for k, v in back.tickets.items()})
    store.write(back.deltas)
    check(store, events, delivered, Measure(tz))
    again = remeasure_tickets(store.tickets, Measure(tz))
    assert again.tickets == {} and again.affected == []


def downgrade(store: Store) -> None:
    """Make ``store`` what the release before the SPEC §3a measures left: documents without
    the mark (and the values only it stores), aggregates and issues without the measures."""
    for doc in store.tickets.values():
        for key in (MEASURES_MARK, STORED_SLA_MET, STORED_RESOLUTION_HOURS):
            doc.pop(key, None)
    store.daily = {k: v for k, v in store.daily.items() if k[2] not in MEASURE_KEYS}
    store.facts = {k: v for k, v in store.facts.items() if k[1] not in MEASURE_KEYS}
    store.issues = {i for i in store.issues if i[1] != NEGATIVE_RESOLUTION_TIME}


@settings(max_examples=100, deadline=None)
@given(
    seed=st.randoms(use_true_random=False),
    tz=st.sampled_from([NY, SH]),
    business=st.sampled_from([None, slow_hours]),
    sla=SLAS,
    cut=st.floats(0.0, 1.0),
)
def test_upgrade_backfills_old_documents_exactly_once(
    seed: random.Random, tz: tzinfo, business: Any, sla: float, cut: float
) -> None:
    """Tickets stored by the previous release, then events for some of them with this one
    (diffs must not subtract what the old documents never added), then the backfill."""
    measure = Measure(tz, business, sla_hours=sla)
    events = HistoryMaker(seed, tz).history(tickets=seed.randint(1, 8))
    delivered = deliveries(seed, events)
    split = int(len(delivered) * cut)
    store = Store()
    for i in range(0, split, 7):
        store.apply(delivered[i : min(i + 7, split)], measure)
    downgrade(store)
    for i in range(split, len(delivered), 5):
        store.apply(delivered[i : i + 5], measure)
    done = remeasure_tickets(store.tickets, measure)
    store.tickets.update({k: orjson.loads(v) for k, v in done.tickets.items()})
    store.write(done.deltas)
    check(store, events, delivered, measure)
    assert all(doc.get(MEASURES_MARK) == 1 for doc in store.tickets.values() if doc)
    again = remeasure_tickets(store.tickets, measure)
    assert again.tickets == {} and again.affected == [] and not again.deltas.daily
