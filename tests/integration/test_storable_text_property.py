"""Property over the full Unicode range: every event ingest accepts, scoring stores."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as note_statistic
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest.intake import Outgoing, classify, classify_item
from services.scoring.engine.handlers import Incoming, process_batch
from services.scoring.kpi.measure import Measure
from shared.db import session_scope
from shared.deadletter import Source
from shared.events import EVENT_TYPES, decode_event, loads_with_surrogates
from shared.topics import EVENTS, TICKETS
from tests.integration.test_ingest_flow import all_types

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TZ = ZoneInfo("Asia/Shanghai")
HTTP = Source("http")

# Every code point, surrogates and controls included, plus the values the issue is about.
ANY_CHAR = st.characters(codec=None, categories=None)
SPECIAL = [
    "\x00", "a\x00b", "\ud800", "x\udfff", "\udc00\ud800", "张伟", "😀", "👨\u200d👩\u200d👧",
    "a\u2028b", "\u202eevil", "\ufeffbom", "\ufffe", "x\uffff", "\x01", "\x1b[2J", "\x7f",
    "\x85", "\x9f", "   ", "\t\n", "\u3000", "x" * 128, "y" * 129, "😀" * 128,
    " " + "z" * 128 + " ",
]  # fmt: skip
# Storable text three times in six: keeps most batches reaching the database with something.
storable = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=12)
text = st.one_of(
    storable,
    storable,
    storable,
    st.text(ANY_CHAR, max_size=12),
    st.sampled_from(SPECIAL),
    st.text(ANY_CHAR, min_size=125, max_size=131),
)
STAMP = st.sampled_from(["2026-03-01T09:30:00+08:00", "2026-03-02T01:00:00Z"])


def _event(kind: str, required: dict[str, Any], optional: dict[str, Any]) -> Any:
    return st.fixed_dictionaries(
        {"type": st.just(kind), "event_id": text, "occurred_at": STAMP, **required},
        optional={"source": text, **optional},
    )


events = st.one_of(
    _event("ticket.created", {"ticket_id": text}, {"specialist_id": text, "channel": text}),
    _event("ticket.assigned", {"ticket_id": text, "specialist_id": text}, {}),
    _event("ticket.first_response", {"ticket_id": text, "specialist_id": text}, {}),
    _event(
        "ticket.closed",
        {"ticket_id": text, "specialist_id": text, "resolved": st.booleans()},
        {},
    ),
    _event("ticket.reopened", {"ticket_id": text}, {}),
    _event("ticket.followup", {"ticket_id": text, "specialist_id": text}, {}),
    _event(
        "record.audited", {"specialist_id": text, "accurate": st.booleans()}, {"ticket_id": text}
    ),
    _event("survey.csat", {"score": st.integers(1, 5)}, {"ticket_id": text, "specialist_id": text}),
    _event("survey.nps", {"score": st.integers(0, 10)}, {"ticket_id": text, "specialist_id": text}),
    _event(
        "survey.peer_review",
        {"specialist_id": text, "reviewer_id": text, "score": st.integers(1, 5)},
        {},
    ),
    _event(
        "survey.training",
        {
            "session_id": text,
            "specialist_id": text,
            "session_at": STAMP,
            "score": st.integers(1, 5),
        },
        {},
    ),
)


def wire_forms(obj: object) -> list[bytes]:
    """The bytes a producer can put on a raw topic for ``obj``."""
    try:
        return [orjson.dumps(obj)]
    except orjson.JSONEncodeError:
        # A lone surrogate: as a \ud800 escape (any JSON encoder) or as its CESU-8 bytes.
        return [
            json.dumps(obj).encode(),
            json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass"),
        ]


def verdicts(obj: dict[str, Any], offset: int) -> list[Outgoing]:
    """Ingest's verdicts on ``obj``: the HTTP submit logic, then every raw Kafka form."""
    source = Source("kafka", TICKETS, 0, offset)
    return [classify_item(obj, HTTP, AT)] + [
        classify(raw, None, source, AT) for raw in wire_forms(obj)
    ]


def body_items(batch: list[dict[str, Any]]) -> object:
    """The items POST /v1/events judges for this batch as one JSON body (app.post_events)."""
    body = json.dumps(batch).encode()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return loads_with_surrogates(body)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(events, min_size=1, max_size=6))
@example(  # the issue: a NUL in event_id was accepted, then failed the batch forever
    batch=[
        {"type": "ticket.reopened", "event_id": "a\x00", "occurred_at": "2026-03-01T09:30:00Z",
         "ticket_id": "T-1"},
        {"type": "ticket.reopened", "event_id": "after", "occurred_at": "2026-03-01T09:30:00Z",
         "ticket_id": "T-1"},
    ]
)  # fmt: skip
async def test_every_event_ingest_accepts_is_stored_by_scoring(
    sessionmaker: async_sessionmaker[AsyncSession], batch: list[dict[str, Any]]
) -> None:
    assert body_items(batch) == batch  # a body refused only for surrogates is judged per event
    accepted: list[Incoming] = []
    for offset, obj in enumerate(batch):
        first, *others = verdicts(obj, offset)
        # The same verdict through HTTP and every Kafka form.
        for out in others:
            assert (out.deadletter, out.code, out.errors[:1]) == (
                first.deadletter,
                first.code,
                first.errors[:1],
            )
        if first.deadletter:
            assert orjson.loads(first.value)["errors"]  # the dead letter is readable JSON
            continue
        # Decoded from kpi.events exactly as the scoring consumer does.
        event = decode_event(first.value)
        assert all(decode_event(out.value) == event for out in others)
        accepted.append(Incoming(event, EVENTS, 0, offset))
    note_statistic(f"{len(accepted)} of {len(batch)} events accepted")
    async with session_scope(sessionmaker) as session:
        result = await process_batch(session, accepted, measure=Measure(TZ))
    assert result.applied + result.duplicates == len(accepted)


# ----------------------------------------------------------------- the other direction

_BASES = {obj["type"]: obj for _, obj in all_types("p")}
_IDS = [
    (kind, field)
    for kind, obj in sorted(_BASES.items())
    for field in ("event_id", "ticket_id", "specialist_id", "reviewer_id", "session_id")
    if field in obj
]
_LABELS = [(kind, "source") for kind in sorted(EVENT_TYPES)] + [("ticket.created", "channel")]
unstorable = st.sampled_from(["\x00"]) | st.characters(codec=None, categories=["Cs"])
not_in_ids = unstorable | st.characters(codec=None, categories=["Cc"])
# Letters and digits around the character: never trimmed away, never empty.
solid = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20)


def _assert_rejected(obj: dict[str, Any], field: str) -> None:
    for out in verdicts(obj, 0):
        assert out.deadletter, (field, obj[field])
        assert (out.errors[0].field, out.errors[0].code) == (field, "invalid_text")
        assert orjson.loads(out.value)["errors"][0]["field"] == field


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(_IDS), before=solid, bad=not_in_ids, after=solid)
def test_unstorable_or_control_characters_in_ids_are_always_rejected(
    case: tuple[str, str], before: str, bad: str, after: str
) -> None:
    kind, field = case
    _assert_rejected({**_BASES[kind], field: before + bad + after}, field)


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from(_LABELS), before=st.text(ANY_CHAR, max_size=10), bad=unstorable)
def test_nul_and_lone_surrogates_in_labels_are_always_rejected(
    case: tuple[str, str], before: str, bad: str
) -> None:
    kind, field = case
    _assert_rejected({**_BASES[kind], field: before + bad}, field)
