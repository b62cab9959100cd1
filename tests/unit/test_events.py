"""Unit tests for shared.events: validation, error codes, canonical encoding."""

from __future__ import annotations

import contextlib
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import topics
from shared.events import (
    ERROR_CODES,
    EVENT_ADAPTER,
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    SURVEY_TYPES,
    TICKET_TYPES,
    Event,
    EventBase,
    FieldError,
    InvalidEvent,
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
    decode_event,
    encode_event,
    raw_topic_for,
    validate_event_obj,
)
from shared.text import id_problem

TS = "2026-03-02T09:15:00+08:00"

# Realistic payloads as a helpdesk/CRM would send them, one per SPEC §2 type.
EXAMPLES: dict[str, tuple[type[EventBase], dict[str, Any]]] = {
    "ticket.created": (
        TicketCreated,
        {
            "event_id": "zd-evt-100001",
            "type": "ticket.created",
            "occurred_at": "2026-03-02T01:02:03Z",
            "source": "zendesk",
            "ticket_id": "T-4711",
            "specialist_id": "sp-liwei",
            "channel": "phone",
        },
    ),
    "ticket.assigned": (
        TicketAssigned,
        {
            "event_id": "zd-evt-100002",
            "type": "ticket.assigned",
            "occurred_at": TS,
            "ticket_id": "T-4711",
            "specialist_id": "sp-zhangmin",
        },
    ),
    "ticket.first_response": (
        TicketFirstResponse,
        {
            "event_id": "zd-evt-100003",
            "type": "ticket.first_response",
            "occurred_at": "2026-03-02T10:00:00.250+08:00",
            "ticket_id": "T-4711",
            "specialist_id": "sp-zhangmin",
        },
    ),
    "ticket.closed": (
        TicketClosed,
        {
            "event_id": "zd-evt-100004",
            "type": "ticket.closed",
            "occurred_at": "2026-03-03T16:45:10-05:00",
            "ticket_id": "T-4711",
            "specialist_id": "sp-zhangmin",
            "resolved": True,
        },
    ),
    "ticket.reopened": (
        TicketReopened,
        {
            "event_id": "zd-evt-100005",
            "type": "ticket.reopened",
            "occurred_at": "2026-03-04T08:00:00Z",
            "ticket_id": "T-4711",
        },
    ),
    "ticket.followup": (
        TicketFollowup,
        {
            "event_id": "crm-fu-77",
            "type": "ticket.followup",
            "occurred_at": "2026-03-05T11:30:00+08:00",
            "source": "crm",
            "ticket_id": "T-4711",
            "specialist_id": "sp-zhangmin",
        },
    ),
    "record.audited": (
        RecordAudited,
        {
            "event_id": "qa-audit-9",
            "type": "record.audited",
            "occurred_at": "2026-03-06T14:00:00+08:00",
            "specialist_id": "sp-zhangmin",
            "ticket_id": "T-4711",
            "accurate": False,
        },
    ),
    "survey.csat": (
        SurveyCsat,
        {
            "event_id": "srv-csat-1",
            "type": "survey.csat",
            "occurred_at": "2026-03-04T09:00:00Z",
            "ticket_id": "T-4711",
            "score": 4,
        },
    ),
    "survey.nps": (
        SurveyNps,
        {
            "event_id": "srv-nps-1",
            "type": "survey.nps",
            "occurred_at": "2026-03-04T09:01:00Z",
            "specialist_id": "sp-zhangmin",
            "score": 0,
        },
    ),
    "survey.peer_review": (
        SurveyPeerReview,
        {
            "event_id": "peer-2026q1-3",
            "type": "survey.peer_review",
            "occurred_at": "2026-03-20T18:00:00+08:00",
            "specialist_id": "sp-zhangmin",
            "reviewer_id": "sp-liwei",
            "score": 5,
        },
    ),
    "survey.training": (
        SurveyTraining,
        {
            "event_id": "train-fb-12",
            "type": "survey.training",
            "occurred_at": "2026-03-10T17:00:00+08:00",
            "session_id": "onboarding-2026-03-10",
            "specialist_id": "sp-liwei",
            "session_at": "2026-03-10T14:00:00+08:00",
            "score": 5,
        },
    ),
}


def payload(event_type: str, **changes: Any) -> dict[str, Any]:
    """A valid example of event_type with fields changed; a value of ... removes the field."""
    data = dict(EXAMPLES[event_type][1])
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def raw(event_type: str, **changes: Any) -> bytes:
    return orjson.dumps(payload(event_type, **changes))


def rejection(data: bytes | str, **kwargs: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(data, **kwargs)
    return info.value


def assert_rejected(data: bytes | str, field: str, code: str) -> InvalidEvent:
    err = rejection(data)
    assert (err.errors[0].field, err.code) == (field, code), str(err)
    assert err.errors[0].reason and not err.errors[0].reason.startswith("Input should")
    return err


# ------------------------------------------------------------------- valid input


def test_examples_cover_every_type() -> None:
    assert set(EXAMPLES) == EVENT_TYPES
    assert TICKET_TYPES | SURVEY_TYPES == EVENT_TYPES
    assert not TICKET_TYPES & SURVEY_TYPES


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_type_validates_from_json(event_type: str) -> None:
    cls, data = EXAMPLES[event_type]
    event = decode_event(orjson.dumps(data))
    assert type(event) is cls
    assert event.type == event_type
    assert event.event_id == data["event_id"]
    assert event.occurred_at.utcoffset() is not None
    for key, value in data.items():
        if key not in {"occurred_at", "session_at"}:
            assert getattr(event, key) == value


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_round_trip_is_exact_and_canonical(event_type: str) -> None:
    event = decode_event(raw(event_type))
    encoded = encode_event(event)
    again = decode_event(encoded)
    assert again == event
    assert encode_event(again) == encoded
    assert b"null" not in encoded
    assert list(orjson.loads(encoded)) == sorted(orjson.loads(encoded))


def test_encode_preserves_offsets_and_uses_rfc3339() -> None:
    event = decode_event(raw("survey.training"))
    doc = orjson.loads(encode_event(event))
    assert doc["occurred_at"] == "2026-03-10T17:00:00+08:00"
    assert doc["session_at"] == "2026-03-10T14:00:00+08:00"
    utc = orjson.loads(encode_event(decode_event(raw("ticket.reopened"))))
    assert utc["occurred_at"] == "2026-03-04T08:00:00Z"
    frac = orjson.loads(encode_event(decode_event(raw("ticket.first_response"))))
    assert frac["occurred_at"] == "2026-03-02T10:00:00.250000+08:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T09:15:00Z", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-03-02t09:15:00z", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-03-02 09:15:00+00:00", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-03-02T09:15:00-00:00", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-03-02T17:15:00+08:00", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-03-02T09:15:00.123456789Z", datetime(2026, 3, 2, 9, 15, 0, 123456, tzinfo=UTC)),
        ("2026-03-02T03:45:00-05:30", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
    ],
)
def test_rfc3339_forms_accepted(text: str, expected: datetime) -> None:
    event = decode_event(raw("ticket.reopened", occurred_at=text))
    assert event.occurred_at == expected


def test_unknown_extra_fields_ignored() -> None:
    event = decode_event(raw("ticket.closed", priority="high", tags=["vip"], nested={"a": [1]}))
    assert isinstance(event, TicketClosed)
    assert not hasattr(event, "priority")
    assert "tags" not in event.model_dump()
    assert b"priority" not in encode_event(event)


def test_schema_version_and_source_accepted() -> None:
    event = decode_event(raw("survey.csat", schema_version=2, source="crm"))
    assert event.schema_version == 2
    assert event.source == "crm"


def test_ids_are_whitespace_trimmed() -> None:
    event = decode_event(
        raw("survey.peer_review", event_id="  e-1\t", specialist_id="\nsp-1 ", reviewer_id=" r ")
    )
    assert isinstance(event, SurveyPeerReview)
    assert (event.event_id, event.specialist_id, event.reviewer_id) == ("e-1", "sp-1", "r")


def test_id_of_exactly_128_chars_accepted() -> None:
    event = decode_event(raw("ticket.reopened", ticket_id="t" * 128, event_id=" " + "e" * 128))
    assert isinstance(event, TicketReopened)
    assert event.ticket_id == "t" * 128
    assert event.event_id == "e" * 128


@pytest.mark.parametrize(
    ("event_type", "changes"),
    [
        ("ticket.created", {"specialist_id": ..., "channel": ...}),
        ("record.audited", {"ticket_id": ...}),
        ("survey.csat", {"ticket_id": ..., "specialist_id": "sp-1"}),
        ("survey.csat", {"ticket_id": "T-1", "specialist_id": "sp-1"}),
        ("survey.nps", {"specialist_id": ..., "ticket_id": "T-1"}),
    ],
)
def test_optional_fields(event_type: str, changes: dict[str, Any]) -> None:
    event = decode_event(raw(event_type, **changes))
    assert event.type == event_type


@pytest.mark.parametrize(
    ("low", "high", "event_type"),
    [
        (1, 5, "survey.csat"),
        (0, 10, "survey.nps"),
        (1, 5, "survey.peer_review"),
        (1, 5, "survey.training"),
    ],
)
def test_score_bounds_inclusive(low: int, high: int, event_type: str) -> None:
    for score in (low, high):
        event = decode_event(raw(event_type, score=score))
        assert getattr(event, "score") == score  # noqa: B009 - union members differ


def test_decode_accepts_str_and_validate_event_obj_accepts_parsed() -> None:
    text = raw("ticket.assigned").decode()
    assert decode_event(text) == decode_event(text.encode())
    assert validate_event_obj(payload("ticket.assigned")) == decode_event(text)
    assert EVENT_ADAPTER.validate_python(payload("ticket.assigned")) == decode_event(text)


def test_events_are_frozen_and_hashable() -> None:
    event = decode_event(raw("ticket.closed"))
    assert isinstance(event, TicketClosed)
    with pytest.raises(ValidationError):
        event.resolved = False  # type: ignore[misc]
    assert hash(event) == hash(decode_event(raw("ticket.closed")))


def test_python_construction_of_aware_datetimes() -> None:
    zoned = datetime(2026, 3, 2, 17, 15, tzinfo=ZoneInfo("Asia/Shanghai"))
    event = TicketReopened(event_id="e", occurred_at=zoned, ticket_id="t")
    assert event.occurred_at == zoned
    assert orjson.loads(encode_event(event))["occurred_at"] == "2026-03-02T17:15:00+08:00"
    assert decode_event(encode_event(event)) == event
    with pytest.raises(ValidationError):
        TicketReopened(event_id="e", occurred_at=datetime(2026, 3, 2), ticket_id="t")


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [(t, topics.TICKETS) for t in sorted(TICKET_TYPES)]
    + [(t, topics.SURVEYS) for t in sorted(SURVEY_TYPES)],
)
def test_raw_topic_for(event_type: str, topic: str) -> None:
    assert raw_topic_for(event_type) == topic


def test_raw_topic_for_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        raw_topic_for("ticket.deleted")


def test_topic_names_are_the_public_ones() -> None:
    assert (topics.TICKETS, topics.SURVEYS) == ("helpdesk.tickets", "helpdesk.surveys")
    assert topics.DEADLETTER == "kpi.deadletter"
    assert set(topics.ALL_TOPICS) == {
        "helpdesk.tickets",
        "helpdesk.surveys",
        "kpi.events",
        "kpi.scores",
        "kpi.deadletter",
    }


# ------------------------------------------------------------------ invalid input


@pytest.mark.parametrize(
    "data", [b"", b"{", b"{'a': 1}", b"\xff\xfe{}", b"NaN", b'{"a": 1} x', b"\xef\xbb\xbf{}"]
)
def test_not_json(data: bytes) -> None:
    assert_rejected(data, "$", "not_json")


def test_str_with_lone_surrogate_names_the_string() -> None:
    assert_rejected('{"type": "\ud800"}', "type", "invalid_text")


@pytest.mark.parametrize("data", [b"[]", b"[{}]", b"42", b'"ticket.created"', b"null", b"true"])
def test_not_object(data: bytes) -> None:
    assert_rejected(data, "$", "not_object")


@pytest.mark.parametrize("value", ["ticket.deleted", "TICKET.CREATED", "", " ticket.created"])
def test_unknown_type(value: str) -> None:
    err = assert_rejected(raw("ticket.created", type=value), "type", "unknown_type")
    assert "unknown event type" in err.errors[0].reason


def test_missing_type() -> None:
    assert_rejected(raw("ticket.created", type=...), "type", "missing_field")


@pytest.mark.parametrize("value", [5, None, ["ticket.created"], {"x": 1}])
def test_non_string_type(value: object) -> None:
    assert_rejected(raw("ticket.created", type=value), "type", "wrong_type")


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("ticket.created", "event_id"),
        ("ticket.created", "occurred_at"),
        ("ticket.created", "ticket_id"),
        ("ticket.assigned", "specialist_id"),
        ("ticket.closed", "resolved"),
        ("record.audited", "accurate"),
        ("record.audited", "specialist_id"),
        ("survey.csat", "score"),
        ("survey.peer_review", "reviewer_id"),
        ("survey.training", "session_at"),
        ("survey.training", "session_id"),
    ],
)
def test_missing_field(event_type: str, field: str) -> None:
    err = assert_rejected(raw(event_type, **{field: ...}), field, "missing_field")
    assert str(err) == f"{field}: is required (missing_field)"


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        # booleans must be JSON true/false
        ("ticket.closed", "resolved", "yes"),
        ("ticket.closed", "resolved", 1),
        ("ticket.closed", "resolved", "true"),
        ("record.audited", "accurate", 0),
        ("record.audited", "accurate", None),
        # scores must be JSON integers
        ("survey.csat", "score", 4.5),
        ("survey.csat", "score", 4.0),
        ("survey.nps", "score", "4"),
        ("survey.peer_review", "score", True),
        ("survey.training", "score", [5]),
        ("survey.csat", "schema_version", "1"),
        # strings must be JSON strings
        ("ticket.created", "ticket_id", 4711),
        ("ticket.created", "specialist_id", True),
        ("ticket.created", "event_id", 1),
        ("ticket.created", "channel", {"name": "phone"}),
        ("survey.peer_review", "reviewer_id", ["r"]),
        ("ticket.reopened", "source", 3),
        # timestamps must be strings
        ("ticket.created", "occurred_at", None),
        ("ticket.created", "occurred_at", True),
        ("survey.training", "session_at", {"seconds": 1}),
    ],
)
def test_wrong_type(event_type: str, field: str, value: object) -> None:
    assert_rejected(raw(event_type, **{field: value}), field, "wrong_type")


def test_wrong_type_reasons_are_sentences() -> None:
    assert str(rejection(raw("ticket.closed", resolved="yes"))) == (
        "resolved: must be a boolean (true or false) (wrong_type)"
    )
    assert str(rejection(raw("survey.csat", score=4.5))) == "score: must be an integer (wrong_type)"
    assert str(rejection(raw("ticket.reopened", ticket_id=1))) == (
        "ticket_id: must be a string (wrong_type)"
    )


@pytest.mark.parametrize(
    ("event_type", "score", "low", "high"),
    [
        ("survey.csat", 0, 1, 5),
        ("survey.csat", 6, 1, 5),
        ("survey.nps", -1, 0, 10),
        ("survey.nps", 11, 0, 10),
        ("survey.peer_review", 0, 1, 5),
        ("survey.peer_review", 6, 1, 5),
        ("survey.training", 0, 1, 5),
        ("survey.training", 100, 1, 5),
    ],
)
def test_score_out_of_range(event_type: str, score: int, low: int, high: int) -> None:
    err = assert_rejected(raw(event_type, score=score), "score", "out_of_range")
    assert str(err) == f"score: must be between {low} and {high} (out_of_range)"


def test_schema_version_must_be_positive() -> None:
    assert_rejected(raw("ticket.created", schema_version=0), "schema_version", "out_of_range")


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T09:15:00",
        "2026-03-02T09:15:00.5",
        "2026-03-02 09:15:00",
        "2026-03-02T09:15",
        "2026-03-02",
    ],
)
@pytest.mark.parametrize("field", ["occurred_at", "session_at"])
def test_naive_timestamp(value: str, field: str) -> None:
    err = assert_rejected(raw("survey.training", **{field: value}), field, "naive_timestamp")
    assert "timestamp must include a UTC offset (RFC 3339)" in err.errors[0].reason


@pytest.mark.parametrize("value", [1772442900, 1772442900123, 1772442900.5, 0])
@pytest.mark.parametrize("field", ["occurred_at", "session_at"])
def test_unix_number_timestamp(value: float, field: str) -> None:
    err = assert_rejected(raw("survey.training", **{field: value}), field, "wrong_type")
    assert "RFC 3339" in err.errors[0].reason


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "1772442900",
        "2026-03-02T09:15:00+0800",
        "2026-03-02T09:15:00+08",
        "2026-03-02T09:15+08:00",
        "20260302T091500Z",
        "2026-02-30T09:15:00Z",
        "2026-03-02T24:00:00Z",
        "2026-03-02T09:15:00+24:00",
        " 2026-03-02T09:15:00Z",
        "2026-03-02T09:15:00Z[Asia/Shanghai]",
    ],
)
def test_malformed_timestamp(value: str) -> None:
    assert_rejected(raw("ticket.reopened", occurred_at=value), "occurred_at", "invalid_value")


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00"])
def test_timestamp_at_datetime_limits_rejected(value: str) -> None:
    assert_rejected(raw("ticket.reopened", occurred_at=value), "occurred_at", "out_of_range")


@pytest.mark.parametrize(
    ("field", "event_type"),
    [
        ("event_id", "ticket.created"),
        ("ticket_id", "ticket.created"),
        ("specialist_id", "ticket.closed"),
        ("reviewer_id", "survey.peer_review"),
        ("session_id", "survey.training"),
    ],
)
def test_oversized_id(field: str, event_type: str) -> None:
    err = assert_rejected(raw(event_type, **{field: "x" * 129}), field, "out_of_range")
    assert "128" in err.errors[0].reason


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_empty_id(value: str) -> None:
    assert_rejected(raw("ticket.assigned", specialist_id=value), "specialist_id", "out_of_range")


# ------------------------------------------------------ storable text (invalid_text)

# Every id field of SPEC §2 with a type that has it, and the free-text labels.
ID_FIELDS = [
    ("event_id", "ticket.created"),
    ("ticket_id", "ticket.created"),
    ("specialist_id", "ticket.closed"),
    ("reviewer_id", "survey.peer_review"),
    ("session_id", "survey.training"),
    ("ticket_id", "survey.csat"),
    ("specialist_id", "survey.nps"),
]
LABEL_FIELDS = [("source", "ticket.reopened"), ("channel", "ticket.created")]

# value -> reason: what no string may hold (PostgreSQL, UTF-8).
UNSTORABLE = [
    ("a\x00b", "must not contain U+0000 (NUL)"),
    ("\x00", "must not contain U+0000 (NUL)"),
    ("a\ud800b", "must not contain an unpaired surrogate U+D800"),
    ("\udfff", "must not contain an unpaired surrogate U+DFFF"),
    ("\udc00\ud800", "must not contain an unpaired surrogate U+DC00"),
]
# value -> reason: what ids (not labels) may not hold either.
NOT_IN_IDS = [
    ("a\x01b", "must not contain the control character U+0001"),
    ("a\tb", "must not contain the control character U+0009"),
    ("a\nb", "must not contain the control character U+000A"),
    ("a\x1bb", "must not contain the control character U+001B"),
    ("a\x7fb", "must not contain the control character U+007F"),
    ("a\x85b", "must not contain the control character U+0085"),
    ("a\x9fb", "must not contain the control character U+009F"),
]
# Allowed in ids: every sink (PostgreSQL, JSON, CSV/XLSX, JSON logs) keeps them intact.
ID_ALLOWED = [
    "张伟-客服",
    "s-42 😀",
    "a\u2028b\u2029c",  # line/paragraph separators
    "a\u202eb\u2066c\u200fd",  # bidi controls
    "\ufeffid",  # BOM as a character
    "a\u200db\u200bc",  # zero-width joiner/space
    "\ue000\U000f0000",  # private use
    "\U0010ffff\ufdd0\ufffe\uffff",  # noncharacters (XLSX exports write U+FFFD)
    "x" * 128,
]


def _bytes(data: dict[str, Any]) -> bytes:
    # orjson cannot encode a lone surrogate; \ud800 escapes are what a producer would send.
    return json.dumps(data).encode()


def _both_paths(event_type: str, field: str, value: str) -> list[InvalidEvent]:
    """The rejection through the wire (decode_event) and a parsed object (validate_event_obj)."""
    errors = [rejection(_bytes(payload(event_type, **{field: value})))]
    with pytest.raises(InvalidEvent) as info:
        validate_event_obj(payload(event_type, **{field: value}))
    return [*errors, info.value]


@pytest.mark.parametrize(("value", "reason"), UNSTORABLE + NOT_IN_IDS)
@pytest.mark.parametrize(("field", "event_type"), ID_FIELDS)
def test_ids_reject_unstorable_and_control_characters(
    field: str, event_type: str, value: str, reason: str
) -> None:
    for err in _both_paths(event_type, field, value):
        assert [(e.field, e.reason, e.code) for e in err.errors] == [
            (field, reason, "invalid_text")
        ]


@pytest.mark.parametrize(("value", "reason"), UNSTORABLE)
@pytest.mark.parametrize(("field", "event_type"), LABEL_FIELDS)
def test_labels_reject_unstorable(field: str, event_type: str, value: str, reason: str) -> None:
    for err in _both_paths(event_type, field, value):
        assert [(e.field, e.reason, e.code) for e in err.errors] == [
            (field, reason, "invalid_text")
        ]


@pytest.mark.parametrize("value", ID_ALLOWED)
@pytest.mark.parametrize(("field", "event_type"), ID_FIELDS + LABEL_FIELDS)
def test_other_characters_are_kept_intact(field: str, event_type: str, value: str) -> None:
    event = decode_event(orjson.dumps(payload(event_type, **{field: value})))
    assert getattr(event, field) == value
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize("value", [value for value, _ in NOT_IN_IDS])
@pytest.mark.parametrize(("field", "event_type"), LABEL_FIELDS)
def test_labels_keep_control_characters(field: str, event_type: str, value: str) -> None:
    # SPEC: only ids exclude control characters; labels are never exported nor keyed on.
    event = decode_event(orjson.dumps(payload(event_type, **{field: value})))
    assert getattr(event, field) == value


@pytest.mark.parametrize(
    ("value", "stored"),
    [(" \tT-1\n ", "T-1"), ("\x85T-1\u3000", "T-1"), ("T-1\r\n", "T-1")],
)
def test_whitespace_controls_around_ids_are_trimmed_first(value: str, stored: str) -> None:
    event = decode_event(raw("ticket.reopened", ticket_id=value))
    assert isinstance(event, TicketReopened) and event.ticket_id == stored


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        # Length and emptiness are judged first, on the trimmed value.
        ({"event_id": "x" * 128 + "\x00"}, "event_id", "out_of_range"),
        ({"event_id": " \t "}, "event_id", "out_of_range"),
        # The type tag must be one of the names: anything else is unknown.
        ({"type": "ticket.created\x00"}, "type", "unknown_type"),
        ({"type": "ticket.created\ud800"}, "type", "unknown_type"),
        # A NUL in an ignored field is never stored: the event is fine.
        ({"note": "a\x00b"}, None, None),
    ],
)
def test_text_rule_interplay(changes: dict[str, Any], field: str | None, code: str | None) -> None:
    data = payload("ticket.created", **changes)
    if field is None:
        assert validate_event_obj(data).type == "ticket.created"
        return
    with pytest.raises(InvalidEvent) as info:
        validate_event_obj(data)
    assert (info.value.errors[0].field, info.value.code) == (field, code)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # \ud800 escapes: orjson refuses the whole message; the string is still named.
        (b'{"type": "ticket.reopened", "event_id": "\\ud83d", "ticket_id": "T"}', "event_id"),
        (b'{"type": "ticket.reopened", "note": {"tags": ["ok", "\\udc00"]}}', "note.tags.1"),
        (b'{"type": "ticket.reopened", "\\ud800key": 1}', "\ufffdkey"),
        (b'"\\ud800"', "$"),
        # CESU-8 bytes of a surrogate (what "surrogatepass" writes) are named the same way.
        (b'{"type": "ticket.reopened", "ticket_id": "\xed\xa0\x80"}', "ticket_id"),
    ],
)
def test_surrogates_anywhere_in_the_message_are_named(data: bytes, field: str) -> None:
    err = rejection(data)
    assert (err.errors[0].field, err.code) == (field, "invalid_text"), str(err)
    assert "unpaired surrogate" in err.errors[0].reason


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": "\\ud800", "b": NaN}',  # not JSON for another reason too
        b'{"a": "\\ud800", "b": 1e400}',
        b'\xef\xbb\xbf{"a": "\\ud800"}',  # BOM
        b'{"a": "\\ud800", "b": "\xff"}',  # invalid UTF-8 besides the surrogate
        b'{"a": "\\ud800"',  # truncated
        b"[" * 5000 + b'"\\ud800"' + b"]" * 5000,  # nested beyond any parser
    ],
)
def test_surrogate_naming_never_accepts_other_broken_json(data: bytes) -> None:
    assert_rejected(data, "$", "not_json")


def test_python_built_events_follow_the_same_rules() -> None:
    with pytest.raises(ValidationError) as info:
        TicketReopened(
            event_id="e\x00", occurred_at=datetime(2026, 3, 2, tzinfo=UTC), ticket_id="t"
        )
    assert info.value.errors()[0]["type"] == "invalid_text"
    event = TicketReopened(
        event_id="e", occurred_at=datetime(2026, 3, 2, tzinfo=UTC), ticket_id="張"
    )
    assert decode_event(encode_event(event)) == event


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(codec=None, categories=None), max_size=40))
def test_any_accepted_id_is_storable(value: str) -> None:
    try:
        event = validate_event_obj(payload("ticket.reopened", ticket_id=value))
    except InvalidEvent as err:
        assert err.code in {"invalid_text", "out_of_range"}
        assert err.errors[0].field == "ticket_id"
        return
    assert isinstance(event, TicketReopened)
    assert id_problem(event.ticket_id) is None
    assert event.ticket_id.encode("utf-8").decode("utf-8") == event.ticket_id  # no surrogate
    assert "\x00" not in event.ticket_id


def test_oversized_message() -> None:
    big = raw("ticket.created", padding="x" * MAX_EVENT_BYTES)
    assert len(big) > MAX_EVENT_BYTES
    assert_rejected(big, "$", "oversized")
    assert_rejected(big.decode(), "$", "oversized")


def test_oversized_is_checked_before_parsing() -> None:
    assert_rejected(b"x" * (MAX_EVENT_BYTES + 1), "$", "oversized")
    # Multi-byte characters count in bytes, not characters.
    assert_rejected('"' + "é" * 40_000 + '"', "$", "oversized")


def test_custom_max_bytes() -> None:
    data = raw("ticket.created")
    assert decode_event(data, max_bytes=len(data)).type == "ticket.created"
    assert rejection(data, max_bytes=len(data) - 1).code == "oversized"


@pytest.mark.parametrize("event_type", ["survey.csat", "survey.nps"])
def test_customer_survey_needs_ticket_or_specialist(event_type: str) -> None:
    err = rejection(raw(event_type, ticket_id=..., specialist_id=...))
    assert err.code == "missing_field"
    assert "ticket_id" in str(err)
    assert "specialist_id" in str(err)


def test_all_problems_are_reported_in_order() -> None:
    err = rejection(raw("survey.csat", event_id="", occurred_at="2026-03-02", score=9))
    assert [(e.field, e.code) for e in err.errors] == [
        ("event_id", "out_of_range"),
        ("occurred_at", "naive_timestamp"),
        ("score", "out_of_range"),
    ]
    assert err.code == "out_of_range"
    assert str(err).count("; ") == 2


def test_validate_event_obj_rejects_non_objects() -> None:
    for value in ([payload("ticket.created")], "x", 1, None):
        with pytest.raises(InvalidEvent) as info:
            validate_event_obj(value)
        assert info.value.code == "not_object"


def test_invalid_event_is_value_error_and_picklable() -> None:
    err = InvalidEvent((FieldError("score", "must be between 1 and 5", "out_of_range"),))
    assert isinstance(err, ValueError)
    assert str(err) == "score: must be between 1 and 5 (out_of_range)"
    copy = pickle.loads(pickle.dumps(err))
    assert copy.errors == err.errors
    assert str(copy) == str(err)
    with pytest.raises(ValueError):
        InvalidEvent(())


# ------------------------------------------------------------------- properties

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=25,
)
_all_fields = sorted({name for cls, _ in EXAMPLES.values() for name in cls.model_fields} - {"type"})
# Objects shaped like events, with every field drawn from plausible-or-hostile values,
# reach the model validators far more often than arbitrary JSON does.
event_like = st.builds(
    lambda event_type, fields: {"type": event_type, **fields},
    st.sampled_from(sorted(EVENT_TYPES)) | json_values,
    st.dictionaries(
        st.sampled_from(_all_fields),
        json_values
        | st.sampled_from(["2026-03-02T09:15:00Z", "2026-03-02T09:15:00", "x" * 129, " id "])
        | st.integers(min_value=-2, max_value=12),
    ),
)


def _decodes_or_rejects(data: bytes | str) -> None:
    try:
        event = decode_event(data)
    except InvalidEvent as err:
        assert err.errors
        assert err.code in ERROR_CODES
    else:
        assert isinstance(event, EventBase)
        assert decode_event(encode_event(event)) == event


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_reject(data: bytes) -> None:
    _decodes_or_rejects(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_decodes_or_rejects(value: object) -> None:
    _decodes_or_rejects(orjson.dumps(value))
    _decodes_or_rejects(orjson.dumps(value).decode())


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(event_like)
def test_event_shaped_json_decodes_or_rejects(value: dict[str, Any]) -> None:
    _decodes_or_rejects(orjson.dumps(value))
    with contextlib.suppress(InvalidEvent):
        validate_event_obj(value)


ids = (
    st.text(
        st.characters(exclude_categories=("Cc", "Cs")),
        min_size=1,
        max_size=128,
    )
    .map(str.strip)
    .filter(bool)
)
opt_ids = st.none() | ids
# Storable text: no NUL, no lone surrogate (the rule is tested on its own above).
labels = st.none() | st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=128
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
stamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
)
envelope: dict[str, Any] = {
    "event_id": ids,
    "occurred_at": stamps,
    "source": labels,
    "schema_version": st.none() | st.integers(min_value=1, max_value=2**31),
}
customer_subject = st.one_of(
    st.tuples(ids, opt_ids), st.tuples(st.none(), ids)
)  # at least one of ticket_id, specialist_id
valid_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(TicketCreated, ticket_id=ids, specialist_id=opt_ids, channel=labels, **envelope),
    st.builds(TicketAssigned, ticket_id=ids, specialist_id=ids, **envelope),
    st.builds(TicketFirstResponse, ticket_id=ids, specialist_id=ids, **envelope),
    st.builds(TicketClosed, ticket_id=ids, specialist_id=ids, resolved=st.booleans(), **envelope),
    st.builds(TicketReopened, ticket_id=ids, **envelope),
    st.builds(TicketFollowup, ticket_id=ids, specialist_id=ids, **envelope),
    st.builds(
        RecordAudited, specialist_id=ids, ticket_id=opt_ids, accurate=st.booleans(), **envelope
    ),
    customer_subject.flatmap(
        lambda s: st.builds(
            SurveyCsat,
            ticket_id=st.just(s[0]),
            specialist_id=st.just(s[1]),
            score=st.integers(1, 5),
            **envelope,
        )
    ),
    customer_subject.flatmap(
        lambda s: st.builds(
            SurveyNps,
            ticket_id=st.just(s[0]),
            specialist_id=st.just(s[1]),
            score=st.integers(0, 10),
            **envelope,
        )
    ),
    st.builds(
        SurveyPeerReview, specialist_id=ids, reviewer_id=ids, score=st.integers(1, 5), **envelope
    ),
    st.builds(
        SurveyTraining,
        session_id=ids,
        specialist_id=ids,
        session_at=stamps,
        score=st.integers(1, 5),
        **envelope,
    ),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events)
def test_generated_events_round_trip(event: Event) -> None:
    encoded = encode_event(event)
    decoded = decode_event(encoded)
    assert decoded == event
    assert type(decoded) is type(event)
    assert decoded.occurred_at.utcoffset() == event.occurred_at.utcoffset()
    assert encode_event(decoded) == encoded
    assert raw_topic_for(decoded.type) in (topics.TICKETS, topics.SURVEYS)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), timezones=st.just(None)
    ),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    st.sampled_from(["", ".5", ".123", ".123456", ".1234567"]),
    st.sampled_from(["T", "t", " "]),
    st.booleans(),
)
def test_fast_timestamp_path_equals_slow_path(
    naive: datetime, offset_minutes: int, frac: str, sep: str, zulu: bool
) -> None:
    """The fromisoformat fast path must agree with the hand-built parse, instant and offset."""
    from shared.events import timestamps as ev

    sign = "-" if offset_minutes < 0 else "+"
    hh, mm = divmod(abs(offset_minutes), 60)
    off = "Z" if zulu else f"{sign}{hh:02d}:{mm:02d}"
    text = naive.replace(microsecond=0).isoformat(sep=sep) + frac + off
    fast = ev._parse_rfc3339(text)
    # Force the slow path by using the lowercase separator variant the fast path skips.
    slow = ev._parse_rfc3339(text[:10] + "t" + text[11:])
    assert fast == slow
    assert fast.utcoffset() == slow.utcoffset()
