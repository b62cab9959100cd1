"""Ingest's pure rules: envelope, key choice, dead-letter record, total classification."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.intake import (
    classify,
    classify_item,
    envelope,
    replay_outgoing,
    stats_delta,
)
from shared.deadletter import MAX_ORIGINAL_BYTES, Source, deadletter_value, decode_original
from shared.events import (
    ERROR_CODES,
    EVENT_TYPES,
    InvalidEvent,
    decode_event,
    partition_key,
    validate_event_obj,
)

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SRC = Source("kafka", "helpdesk.tickets", 2, 41)

GOOD: dict[str, dict[str, Any]] = {
    "ticket.created": {"ticket_id": "T1", "specialist_id": "s1", "channel": "email"},
    "ticket.assigned": {"ticket_id": "T1", "specialist_id": "s1"},
    "ticket.first_response": {"ticket_id": "T1", "specialist_id": "s1"},
    "ticket.closed": {"ticket_id": "T1", "specialist_id": "s1", "resolved": True},
    "ticket.reopened": {"ticket_id": "T1"},
    "ticket.followup": {"ticket_id": "T1", "specialist_id": "s1"},
    "record.audited": {"specialist_id": "s1", "accurate": False},
    "survey.csat": {"ticket_id": "T1", "score": 4},
    "survey.nps": {"specialist_id": "s1", "score": 9},
    "survey.peer_review": {"specialist_id": "s1", "reviewer_id": "s2", "score": 5},
    "survey.training": {
        "session_id": "S1",
        "specialist_id": "s1",
        "session_at": "2026-02-27T10:00:00+08:00",
        "score": 5,
    },
}


def event_obj(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f" e-{kind} ",
        "type": kind,
        "occurred_at": "2026-03-01T17:30:00.5+08:00",
        "source": "zendesk",
        **GOOD[kind],
        **extra,
    }


def test_every_type_is_listed() -> None:
    assert set(GOOD) == EVENT_TYPES


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_envelope_keeps_meaning_and_adds_ingest(kind: str) -> None:
    raw = orjson.dumps(event_obj(kind))
    out = classify(raw, b"k", SRC, AT)
    assert not out.deadletter and out.event_id == f"e-{kind}"
    body = orjson.loads(out.value)
    assert body["_ingest"] == {
        "via": "kafka",
        "topic": "helpdesk.tickets",
        "partition": 2,
        "offset": 41,
        "ingested_at": "2026-03-01T12:00:00.000000Z",
    }
    # Same event after decoding; the offset of the timestamp (its instant) is kept.
    assert decode_event(out.value) == decode_event(raw)
    assert body["occurred_at"] == "2026-03-01T17:30:00.500000+08:00"
    assert body["event_id"] == f"e-{kind}"


def test_partition_key_prefers_ticket_then_specialist_then_event() -> None:
    assert partition_key(validate_event_obj(event_obj("survey.csat"))) == b"T1"
    assert partition_key(validate_event_obj(event_obj("record.audited"))) == b"s1"
    audited = event_obj("record.audited", ticket_id=" T9 ")
    assert partition_key(validate_event_obj(audited)) == b"T9"
    nps = event_obj("survey.nps")
    assert partition_key(validate_event_obj(nps)) == b"s1"
    assert envelope(validate_event_obj(nps), SRC, AT).endswith(b'Z"}}')


def test_newer_producer_fields_and_schema_version_are_accepted() -> None:
    raw = orjson.dumps(
        event_obj(
            "ticket.closed",
            schema_version=3,
            priority="high",
            customer={"tier": "gold", "tags": [1, 2]},
        )
    )
    out = classify(raw, None, SRC, AT)
    assert not out.deadletter
    body = orjson.loads(out.value)
    assert body["schema_version"] == 3 and "priority" not in body and "customer" not in body


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        (b"{not json", "not_json", "$"),
        (b"[1,2]", "not_object", "$"),
        (b'{"event_id":"x","type":"ticket.exploded","occurred_at":"2026-03-01T00:00:00Z"}',
         "unknown_type", "type"),
        (b'{"event_id":"x","type":"ticket.closed","occurred_at":"2026-03-01T00:00:00Z",'
         b'"ticket_id":"T","specialist_id":"s"}', "missing_field", "resolved"),
        (b'{"event_id":"x","type":"ticket.closed","occurred_at":"2026-03-01T00:00:00Z",'
         b'"ticket_id":"T","specialist_id":"s","resolved":"yes"}', "wrong_type", "resolved"),
        (b'{"event_id":"x","type":"survey.csat","occurred_at":"2026-03-01T00:00:00Z",'
         b'"ticket_id":"T","score":6}', "out_of_range", "score"),
        (b'{"event_id":"x","type":"ticket.reopened","occurred_at":"2026-03-01T00:00:00",'
         b'"ticket_id":"T"}', "naive_timestamp", "occurred_at"),
        (b'{"event_id":"x","type":"ticket.reopened","occurred_at":"yesterday",'
         b'"ticket_id":"T"}', "invalid_value", "occurred_at"),
        (b'{"pad":"' + b"x" * 70000 + b'"}', "oversized", "$"),
    ],
)  # fmt: skip
def test_bad_inputs_become_dead_letters(raw: bytes, code: str, field: str) -> None:
    out = classify(raw, b"key-1", SRC, AT)
    assert out.deadletter and out.code == code and out.key == b"key-1"
    letter = orjson.loads(out.value)
    assert letter["code"] == code
    assert letter["errors"][0]["field"] == field and letter["errors"][0]["code"] == code
    assert field in letter["reason"]
    assert letter["original_encoding"] == "utf-8"
    assert letter["original"] == raw.decode()
    assert letter["source"] == {
        "via": "kafka",
        "topic": "helpdesk.tickets",
        "partition": 2,
        "offset": 41,
    }
    assert letter["dead_lettered_at"] == "2026-03-01T12:00:00.000000Z"
    assert letter["replays"] == 0
    assert decode_original(letter) == raw


def test_binary_and_tombstone_messages() -> None:
    raw = b"\xff\xfe\x00garbage"
    letter = orjson.loads(classify(raw, None, SRC, AT).value)
    assert letter["original_encoding"] == "base64"
    assert base64.b64decode(letter["original"]) == raw and letter["code"] == "not_json"
    tomb = classify(None, b"k", SRC, AT)
    assert tomb.deadletter and tomb.code == "not_json"


def test_huge_original_is_truncated_with_size() -> None:
    raw = b"\xff" * (MAX_ORIGINAL_BYTES + 10)
    letter = orjson.loads(classify(raw, None, SRC, AT).value)
    assert letter["original_truncated"] is True
    assert letter["original_size"] == MAX_ORIGINAL_BYTES + 10
    assert letter["code"] == "oversized"


def test_replay_revalidates_and_counts_replays() -> None:
    good = orjson.dumps(event_obj("ticket.reopened"))
    bad = b'{"event_id":"x","type":"ticket.reopened","occurred_at":"2026-03-01T00:00:00"}'
    # As if an older release had rejected a now-valid event.
    old_error = InvalidEvent.single("unknown_type", "unknown event type", field="type")
    letter_good = orjson.loads(deadletter_value(good, old_error, SRC, AT))
    fixed = replay_outgoing(letter_good, b"k", AT)
    assert not fixed.deadletter
    assert orjson.loads(fixed.value)["_ingest"]["via"] == "replay"
    assert orjson.loads(fixed.value)["_ingest"]["offset"] == 41
    again = replay_outgoing(orjson.loads(classify(bad, None, SRC, AT).value), b"k", AT)
    assert again.deadletter and again.key == b"k"
    letter = orjson.loads(again.value)
    assert letter["replays"] == 1 and letter["source"]["via"] == "kafka"
    assert decode_original(letter) == bad


HTTP = Source("http")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": "e\x00"}, "event_id"),  # orjson encodes it: rejected by validation
        ({"event_id": "e\ud800"}, "event_id"),  # orjson cannot encode it at all
        ({"specialist_id": "\udfff"}, "specialist_id"),
        ({"ticket_id": "T\x1f"}, "ticket_id"),
        ({"channel": "\x00"}, "channel"),
        ({"note": ["ok", "\ud83d"]}, "note.1"),  # even where the event would ignore it
    ],
)
def test_http_items_with_unstorable_text_are_dead_lettered_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    out = classify_item(event_obj("ticket.created", **changes), HTTP, AT)
    assert out.deadletter and out.code == "invalid_text" and out.key is None
    assert [(e.field, e.code) for e in out.errors] == [(field, "invalid_text")]
    letter = orjson.loads(out.value)
    assert letter["errors"][0]["field"] == field and letter["source"]["via"] == "http"
    # The original stays readable text, and replaying it gives the same verdict.
    assert letter["original_encoding"] == "utf-8"
    again = replay_outgoing(letter, None, AT)
    assert again.deadletter and [e.field for e in again.errors] == [field]


def test_http_item_is_classified_like_its_json() -> None:
    item = event_obj("ticket.closed", extra={"n": 1})
    assert classify_item(item, HTTP, AT) == classify(orjson.dumps(item), None, HTTP, AT)


def test_replay_of_a_letter_holding_a_surrogate_is_dead_lettered_again() -> None:
    # As a hand-edited record parsed leniently would be: surrogates in original and topic.
    letter = {
        "original": '{"event_id": "e\ud800", "type": "ticket.reopened", "ticket_id": "T"}',
        "original_encoding": "utf-8",
        "code": "not_json",
        "source": {"via": "kafka", "topic": "helpdesk.\udc00", "partition": 1, "offset": 9},
        "replays": 2,
    }
    out = replay_outgoing(letter, b"k", AT)
    assert out.deadletter and out.code == "invalid_text"
    assert [e.field for e in out.errors] == ["event_id"]
    again = orjson.loads(out.value)
    assert again["replays"] == 3 and again["source"]["topic"] is None
    assert again["original_encoding"] == "base64"  # CESU-8 bytes are not UTF-8
    assert decode_original(again) == letter["original"].encode("utf-8", "surrogatepass")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
near_events = st.fixed_dictionaries(
    {"type": st.sampled_from([*sorted(EVENT_TYPES), "ticket.other", ""])},
    optional={
        "event_id": st.one_of(st.text(max_size=140), st.integers()),
        "occurred_at": st.sampled_from(
            ["2026-03-01T00:00:00Z", "2026-03-01T00:00:00", "2026-13-01T00:00:00Z", "", 5]
        ),
        "ticket_id": st.text(max_size=5),
        "specialist_id": st.text(max_size=5),
        "reviewer_id": st.text(max_size=5),
        "session_id": st.text(max_size=5),
        "session_at": st.just("2026-03-01T00:00:00+01:00"),
        "score": st.integers(-2, 12),
        "resolved": st.booleans(),
        "accurate": st.one_of(st.booleans(), st.integers(0, 1)),
        "schema_version": st.integers(-1, 3),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        near_events.map(lambda v: json.dumps(v).encode()),
    )
)
def test_classify_is_total_and_consistent(raw: bytes) -> None:
    out = classify(raw, None, SRC, AT)
    delta = stats_delta([out])
    assert sum(delta.values()) == 1
    if out.deadletter:
        letter = orjson.loads(out.value)
        assert out.code in ERROR_CODES
        assert letter["errors"] and decode_original(letter) == raw
    else:
        body = orjson.loads(out.value)
        assert decode_event(out.value) == decode_event(raw)
        assert body["_ingest"]["offset"] == 41


unicode_text = st.text(st.characters(codec=None, categories=None), max_size=12)
unicode_items = st.recursive(
    st.none() | st.booleans() | st.integers() | unicode_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(unicode_text, children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        unicode_items,
        st.builds(
            lambda kind, fields: {**event_obj(kind), **fields},
            st.sampled_from(sorted(EVENT_TYPES)),
            st.dictionaries(
                st.sampled_from(["event_id", "ticket_id", "specialist_id", "source", "extra"]),
                unicode_text,
            ),
        ),
    )
)
def test_classify_item_is_total_and_its_output_encodable(item: object) -> None:
    out = classify_item(item, HTTP, AT)
    assert sum(stats_delta([out]).values()) == 1
    body = orjson.loads(out.value)  # always valid UTF-8 JSON
    if out.deadletter:
        assert out.code in ERROR_CODES and body["errors"]
    else:
        assert decode_event(out.value).event_id == out.event_id
