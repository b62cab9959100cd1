"""Per-channel breakdown and time distributions (issue 17) against the reference model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scoring.kpi.apply import (
    Deltas,
    apply_events,
    drop_events,
    legacy_survey_facts,
    remeasure_tickets,
    route,
)
from services.scoring.kpi.breakdown import BROKEN_DOWN, MAX_CHANNEL_CHARS, normalise_channel
from services.scoring.kpi.histogram import DISTRIBUTED, bucket_of
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState
from shared.events import EVENT_ADAPTER, Event
from tests.reference import dedup, reference_channel_sums, reference_sums
from tests.unit.test_kpi_properties import NY, SH, ticket_history, utc_instants

# Odd channel values: CJK, emoji, 128 characters (the event limit), blank, padded.
CHANNELS = [None, "", "   ", "web", "Email", "电话", "微信 📱", "x" * 128, " chat ", "unknown"]


@st.composite
def channel_histories(draw: st.DrawFn) -> tuple[list[Event], list[list[Event]], bool]:
    """(unique events, batches delivered shuffled with redeliveries, remember ids).

    ``remember`` False forgets ids of ticket-routed events between batches (the dedup
    table's retention passed): the ticket state alone must recognise them.
    """
    pool = draw(st.lists(utc_instants(), min_size=1, max_size=5))
    raw: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 4))):
        for item in draw(ticket_history(f"T{i}", pool)):
            if item["type"] == "ticket.created":
                channel = draw(st.sampled_from(CHANNELS))
                item = {k: v for k, v in item.items() if k != "channel"}
                if channel is not None:
                    item["channel"] = channel
            raw.append(item)
    ranks = draw(st.permutations(range(len(raw))))
    events = [
        EVENT_ADAPTER.validate_python({**item, "event_id": f"ev-{ranks[i]:03d}"})
        for i, item in enumerate(raw)
    ]
    dups = draw(st.lists(st.sampled_from(events), max_size=6)) if events else []
    delivery = list(draw(st.permutations(events + dups)))
    cuts = sorted(draw(st.lists(st.integers(0, len(delivery)), max_size=4)))
    batches = [delivery[a:b] for a, b in zip([0, *cuts], [*cuts, len(delivery)], strict=True)]
    return events, [b for b in batches if b], draw(st.booleans())


class Store:
    """What the database holds: ticket documents, processed ids and the four tables."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.seen: set[str] = set()
        self.daily: dict[Any, tuple[float, int]] = {}
        self.channels: dict[Any, tuple[float, int]] = {}
        self.buckets: dict[Any, int] = {}

    def write(self, deltas: Deltas) -> None:
        for table, rows in ((self.daily, deltas.daily), (self.channels, deltas.channels)):
            for key, (num, den) in rows.items():
                old = table.get(key, (0.0, 0))
                table[key] = (old[0] + num, old[1] + den)
        for key, n in deltas.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n

    def apply(self, batch: list[Event], measure: Measure, remember: bool) -> None:
        fresh: list[Event] = []
        for event in batch:
            if event.event_id in self.seen:
                continue
            self.seen.add(event.event_id)
            fresh.append(event)
        routed = route(fresh)
        applied = apply_events(
            routed, {t: self.docs.get(t, {}) for t in routed.tickets}, {}, measure
        )
        for ticket_id, doc in applied.tickets.items():
            self.docs[ticket_id] = orjson.loads(doc)
        self.write(applied.deltas)
        if not remember:
            self.seen -= {e.event_id for events in routed.tickets.values() for e in events}


def _close(got: Mapping[Any, tuple[float, int]], want: Mapping[Any, tuple[float, int]]) -> None:
    live = {k: v for k, v in got.items() if v[1] != 0 or abs(v[0]) > 1e-9}
    assert set(live) == set(want), sorted(set(live) ^ set(want))
    for key, (num, den) in want.items():
        assert live[key][1] == den, (key, live[key], (num, den))
        assert math.isclose(live[key][0], num, rel_tol=1e-9, abs_tol=1e-9), (key, live[key])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=channel_histories(), tz=st.sampled_from([NY, SH]))
def test_breakdown_equals_reference_grouped_by_channel_and_sums_to_overall(
    history: tuple[list[Event], list[list[Event]], bool], tz: ZoneInfo
) -> None:
    _events, batches, remember = history
    store = Store()
    measure = Measure(tz)
    for batch in batches:
        store.apply(batch, measure, remember)
    delivered = [e for b in batches for e in b]
    _close(store.channels, reference_channel_sums(delivered, tz))

    # The channels add up to the overall buckets, metric by metric.
    overall = {k: v for k, v in reference_sums(delivered, tz).items() if k[2] in BROKEN_DOWN}
    summed: dict[Any, tuple[float, int]] = {}
    for (who, day, metric, _), (num, den) in store.channels.items():
        old = summed.get((who, day, metric), (0.0, 0))
        summed[(who, day, metric)] = (old[0] + num, old[1] + den)
    _close(summed, overall)
    _close({k: v for k, v in store.daily.items() if k[2] in BROKEN_DOWN}, overall)

    # Every time value is in exactly one bucket: counts equal the denominators, and each
    # ticket's value lies in the bucket counted for it.
    counts: dict[Any, int] = {}
    for (who, day, metric, _bucket), n in store.buckets.items():
        assert n >= 0
        counts[(who, day, metric)] = counts.get((who, day, metric), 0) + n
    dens = {k: v[1] for k, v in overall.items() if k[2] in DISTRIBUTED and v[1]}
    assert {k: n for k, n in counts.items() if n} == dens
    want_buckets: dict[Any, int] = {}
    for ticket_id in {e.ticket_id for e in dedup(delivered) if getattr(e, "ticket_id", None)}:
        group = [e for e in dedup(delivered) if getattr(e, "ticket_id", None) == ticket_id]
        for (who, day, metric), (num, den) in reference_sums(group, tz).items():
            if metric in DISTRIBUTED:
                key = (who, day, metric, bucket_of(num / den))
                want_buckets[key] = want_buckets.get(key, 0) + den
    # A value within float noise of a bucket edge may fall either side; elsewhere exact.
    assert sum(want_buckets.values()) == sum(n for n in store.buckets.values())
    assert {k: n for k, n in store.buckets.items() if n} == want_buckets or _near_edges(
        want_buckets, store.buckets
    )


def _near_edges(want: Mapping[Any, int], got: Mapping[Any, int]) -> bool:
    differing = {k[3] for k in set(want) ^ {k for k, n in got.items() if n}}
    return all(abs(a - b) <= 1 for a in differing for b in differing)


def _ev(**fields: Any) -> Event:
    return EVENT_ADAPTER.validate_python(fields)


T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_channel_is_the_earliest_creation_naming_one_in_any_order() -> None:
    created = [
        _ev(
            event_id="c1", type="ticket.created", occurred_at=_iso(5), ticket_id="T", channel="web"
        ),
        _ev(event_id="c2", type="ticket.created", occurred_at=_iso(0), ticket_id="T", channel=" "),
        _ev(
            event_id="c3", type="ticket.created", occurred_at=_iso(1), ticket_id="T", channel="电话"
        ),
        _ev(event_id="c0", type="ticket.created", occurred_at=_iso(1), ticket_id="T", channel="📱"),
    ]
    for order in (created, created[::-1], created[1:] + created[:1]):
        state = TicketState("T")
        for e in order:
            state.apply(e)
        # c2 is earliest but blank; c0 and c3 tie on time, c0 wins on event_id.
        assert state.channel == "📱"
        again = TicketState.from_json(orjson.loads(orjson.dumps(state.to_storable())))
        assert again.to_json() == state.to_json() and again.channel == "📱"
    assert TicketState("T").channel == "unknown"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (None, None),
        ("", None),
        ("  \t", None),
        (" web ", "web"),
        ("Web", "Web"),
        ("电话", "电话"),
        ("x" * 128, "x" * MAX_CHANNEL_CHARS),
        ("\U0001f4f1" * 100, "\U0001f4f1" * MAX_CHANNEL_CHARS),
    ],
)
def test_channel_normalisation(raw: str | None, want: str | None) -> None:
    assert normalise_channel(raw) == want


def test_a_late_creation_moves_the_whole_share_between_channels() -> None:
    store = Store()
    measure = Measure(UTC)
    store.apply(
        [
            _ev(
                event_id="a",
                type="ticket.created",
                occurred_at=_iso(10),
                ticket_id="T",
                specialist_id="ann",
                channel="web",
            ),
            _ev(
                event_id="b",
                type="ticket.first_response",
                occurred_at=_iso(70),
                ticket_id="T",
                specialist_id="ann",
            ),
            _ev(
                event_id="c",
                type="survey.csat",
                occurred_at=_iso(80),
                ticket_id="T",
                specialist_id="bob",
                score=5,
            ),
        ],
        measure,
        True,
    )
    day = T0.date()
    assert store.channels == {
        ("ann", day, "avg_response_time_hours", "web"): (1.0, 1),
        ("ann", day, "first_response_sla_rate", "web"): (1.0, 1),
        ("bob", day, "customer_satisfaction", "web"): (1.0, 1),
    }
    # An earlier creation by phone arrives late: response time and survey move to phone.
    store.apply(
        [
            _ev(
                event_id="z",
                type="ticket.created",
                occurred_at=_iso(0),
                ticket_id="T",
                channel="phone",
            )
        ],
        measure,
        True,
    )
    live = {k: v for k, v in store.channels.items() if v != (0.0, 0)}
    assert live == {
        ("ann", day, "avg_response_time_hours", "phone"): (pytest.approx(70 / 60), 1),
        ("ann", day, "first_response_sla_rate", "phone"): (1.0, 1),
        ("bob", day, "customer_satisfaction", "phone"): (1.0, 1),
    }
    assert {k: n for k, n in store.buckets.items() if n} == {
        ("ann", day, "avg_response_time_hours", bucket_of(70 / 60)): 1
    }


def _v2(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as the release before issue 17 stored it (no channel, version 2)."""
    return {**{k: v for k, v in doc.items() if k != "n"}, "v": 2}


def test_upgraded_v2_ticket_moves_out_of_unknown_and_enters_the_distribution() -> None:
    measure = Measure(UTC)
    store = Store()
    store.apply(
        [
            _ev(
                event_id="a",
                type="ticket.created",
                occurred_at=_iso(0),
                ticket_id="T",
                specialist_id="ann",
            ),
            _ev(
                event_id="b",
                type="ticket.first_response",
                occurred_at=_iso(30),
                ticket_id="T",
                specialist_id="ann",
            ),
        ],
        measure,
        True,
    )
    day = T0.date()
    # As migration 0017 leaves it: the v2 ticket's share in "unknown", no buckets.
    store.docs["T"] = _v2(store.docs["T"])
    store.buckets.clear()
    assert store.channels == {
        ("ann", day, "avg_response_time_hours", "unknown"): (0.5, 1),
        ("ann", day, "first_response_sla_rate", "unknown"): (1.0, 1),
    }

    # kpi rescore fills the distribution and writes v3; a second run changes nothing.
    done = remeasure_tickets(store.docs, measure)
    assert set(done.tickets) == {"T"} and done.deltas.daily == {} and done.deltas.channels == {}
    assert done.deltas.buckets == {("ann", day, "avg_response_time_hours", bucket_of(0.5)): 1}
    store.write(done.deltas)
    store.docs["T"] = orjson.loads(done.tickets["T"])
    assert store.docs["T"]["v"] == 3
    assert remeasure_tickets(store.docs, measure).tickets == {}

    # Without the rescore, the ticket's next event adds it to the distribution too.
    store.docs["T"] = _v2(store.docs["T"])
    store.buckets.clear()
    store.apply(
        [
            _ev(
                event_id="c",
                type="ticket.created",
                occurred_at=_iso(-30),
                ticket_id="T",
                channel="email",
            )
        ],
        measure,
        True,
    )
    live = {k: v for k, v in store.channels.items() if v != (0.0, 0)}
    assert live == {
        ("ann", day, "avg_response_time_hours", "email"): (1.0, 1),
        ("ann", day, "first_response_sla_rate", "email"): (1.0, 1),
    }
    assert {k: n for k, n in store.buckets.items() if n} == {
        ("ann", day, "avg_response_time_hours", bucket_of(1.0)): 1
    }


def test_survey_naming_ticket_and_specialist_is_counted_in_the_ticket_state() -> None:
    measure = Measure(UTC)
    survey = _ev(
        event_id="s",
        type="survey.nps",
        occurred_at=_iso(0),
        ticket_id="T",
        specialist_id="bob",
        score=10,
    )
    store = Store()
    store.apply([survey], measure, remember=False)
    # Not held (its specialist is known), counted for bob under the ticket's channel.
    assert store.daily == {("bob", T0.date(), "nps"): (1.0, 1)}
    assert TicketState.from_json(store.docs["T"]).surveys[0].specialist_id == "bob"
    # Redelivered after the dedup table forgot it: the ticket state still knows the id.
    store.apply([survey], measure, remember=False)
    assert store.daily == {("bob", T0.date(), "nps"): (1.0, 1)}


def test_plain_survey_goes_to_unknown() -> None:
    store = Store()
    store.apply(
        [_ev(event_id="s", type="survey.csat", occurred_at=_iso(0), specialist_id="bob", score=2)],
        Measure(UTC),
        True,
    )
    assert store.channels == {("bob", T0.date(), "customer_satisfaction", "unknown"): (0.0, 1)}
    assert store.buckets == {}


def test_v2_documents_with_direct_surveys_do_not_exist_but_v3_rows_round_trip() -> None:
    state = TicketState("T")
    state.apply(
        _ev(
            event_id="s",
            type="survey.csat",
            occurred_at=_iso(0),
            ticket_id="T",
            specialist_id="李娜",
            score=4,
        )
    )
    doc = orjson.loads(orjson.dumps(state.to_storable()))
    assert doc["s"] == [["s", "csat", _iso(0), 4, "李娜"]]
    assert TicketState.from_json(doc) == state
    with pytest.raises(ValueError):
        TicketState.from_json({**doc, "n": ["only-one"]})
    with pytest.raises(ValueError):
        TicketState.from_json({**doc, "s": [["s", "csat", _iso(0), 4, 7]]})


def test_legacy_survey_facts_name_only_late_surveys_with_ticket_and_specialist() -> None:
    now = T0 + timedelta(days=2)
    late = _ev(event_id="a", type="survey.csat", occurred_at=_iso(0), ticket_id="T",
               specialist_id="ann", score=5)  # fmt: skip
    hour_ago = (now - timedelta(hours=1)).isoformat()
    recent = _ev(event_id="b", type="survey.nps", occurred_at=hour_ago, ticket_id="T",
                 specialist_id="ann", score=5)  # fmt: skip
    owner_only = _ev(event_id="c", type="survey.nps", occurred_at=_iso(0), ticket_id="T", score=9)
    late_nps = _ev(event_id="d", type="survey.nps", occurred_at=_iso(0), ticket_id="U",
                   specialist_id="bob", score=1)  # fmt: skip
    routed = route([late, recent, owner_only, late_nps])
    keys = legacy_survey_facts(routed, Measure(UTC), now)
    assert keys == {
        ("ann", "customer_satisfaction", T0.date(), "event:a"): ("T", "a"),
        ("bob", "nps", T0.date(), "event:d"): ("U", "d"),
    }
    drop_events(routed, [("T", "a")])
    assert [e.event_id for e in routed.tickets["T"]] == ["b", "c"]
