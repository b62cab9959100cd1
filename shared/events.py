"""Helpdesk/CRM input events (SPEC §2): models, strict decoding, canonical encoding."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Final, Literal, NoReturn, Self, TypeAlias

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic import Strict as _Strict
from pydantic_core import ErrorDetails, PydanticCustomError

from shared.text import (
    ID_RULE,
    INVALID_TEXT,
    PYDANTIC_UNICODE_ERROR,
    TEXT_RULE,
    scrub,
    text_problem,
    unicode_error_reason,
)
from shared.topics import SURVEYS, TICKETS

__all__ = [
    "ERROR_CODES",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "SURVEY_TYPES",
    "TICKET_TYPES",
    "Event",
    "EventBase",
    "FieldError",
    "InvalidEvent",
    "RecordAudited",
    "SurveyCsat",
    "SurveyNps",
    "SurveyPeerReview",
    "SurveyTraining",
    "TicketAssigned",
    "TicketClosed",
    "TicketCreated",
    "TicketFirstResponse",
    "TicketFollowup",
    "TicketReopened",
    "decode_event",
    "encode_event",
    "loads_with_surrogates",
    "partition_key",
    "raw_topic_for",
    "validate_event_obj",
]

MAX_EVENT_BYTES: Final = 64 * 1024

TICKET_TYPES: Final[frozenset[str]] = frozenset(
    {
        "ticket.created",
        "ticket.assigned",
        "ticket.first_response",
        "ticket.closed",
        "ticket.reopened",
        "ticket.followup",
        "record.audited",
    }
)
SURVEY_TYPES: Final[frozenset[str]] = frozenset(
    {"survey.csat", "survey.nps", "survey.peer_review", "survey.training"}
)
EVENT_TYPES: Final[frozenset[str]] = TICKET_TYPES | SURVEY_TYPES

# Stable error codes: metrics labels and dead-letter reasons depend on them.
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
OVERSIZED: Final = "oversized"
UNKNOWN_TYPE: Final = "unknown_type"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
OUT_OF_RANGE: Final = "out_of_range"
NAIVE_TIMESTAMP: Final = "naive_timestamp"
INVALID_VALUE: Final = "invalid_value"
# INVALID_TEXT (shared.text): a string PostgreSQL, exports or logs cannot keep.
ERROR_CODES: Final[frozenset[str]] = frozenset(
    {
        NOT_JSON,
        NOT_OBJECT,
        OVERSIZED,
        UNKNOWN_TYPE,
        MISSING_FIELD,
        WRONG_TYPE,
        OUT_OF_RANGE,
        NAIVE_TIMESTAMP,
        INVALID_VALUE,
        INVALID_TEXT,
    }
)

WHOLE_MESSAGE: Final = "$"
_MAX_ID_CHARS: Final = 128
_MAX_ECHO_CHARS: Final = 64


def raw_topic_for(event_type: str) -> str:
    """Return the raw Kafka topic an event of ``event_type`` belongs on."""
    if event_type in TICKET_TYPES:
        return TICKETS
    if event_type in SURVEY_TYPES:
        return SURVEYS
    raise ValueError(f"unknown event type {_echo(event_type)}")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class FieldError:
    """One reason an event was rejected; ``field`` is a dotted path or ``$``."""

    field: str
    reason: str
    code: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} ({self.code})"


class InvalidEvent(ValueError):
    """An event failed validation; carries every problem found, first one first."""

    errors: tuple[FieldError, ...]

    def __init__(self, errors: tuple[FieldError, ...] | list[FieldError]) -> None:
        if not errors:
            raise ValueError("InvalidEvent needs at least one FieldError")
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @classmethod
    def single(cls, code: str, reason: str, *, field: str = WHOLE_MESSAGE) -> InvalidEvent:
        """One problem; ``field`` defaults to the whole message."""
        return cls((FieldError(field=field, reason=reason, code=code),))

    @property
    def code(self) -> str:
        return self.errors[0].code

    def __str__(self) -> str:
        return "; ".join(str(e) for e in self.errors)

    # The default pickling re-calls __init__ with the message string; workers that
    # ship exceptions across processes need the structured errors back.
    def __reduce__(self) -> tuple[type[InvalidEvent], tuple[tuple[FieldError, ...]]]:
        return (type(self), (self.errors,))


def _echo(value: object) -> str:
    # Reasons end up in logs and dead-letter headers: never echo unbounded input.
    text = repr(value)
    return text if len(text) <= _MAX_ECHO_CHARS else text[: _MAX_ECHO_CHARS - 3] + "..."


# ----------------------------------------------------------------------- timestamps

_RFC3339 = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"[Tt ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<off>[Zz]|(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>\d{2}))?",
    re.ASCII,
)
# The subset of _RFC3339 that datetime.fromisoformat parses the same way (upper-case T
# and Z); no groups, as building the match object cost more than the parse.
_CANONICAL_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})", re.ASCII
).fullmatch
# Date-only and minute-precision local times are common producer mistakes; naming
# them "naive" tells the producer what is actually missing.
_NAIVE_LOOKALIKE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?", re.ASCII
)

# Keeping the UTC instant a day away from datetime's limits lets consumers convert
# to any organisation time zone without OverflowError turning one bad event into a
# crashed consumer.
_MIN_UTC: Final = datetime(1, 1, 2, tzinfo=UTC)
_MAX_UTC: Final = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

_TIMESTAMP_HINT: Final = "e.g. 2026-03-01T09:30:00Z or 2026-03-01T17:30:00+08:00"


def _fixed_offset(dt: datetime) -> datetime:
    # A fixed offset (not a named zone) keeps encoding deterministic and RFC 3339
    # representable; sub-minute offsets (historic LMT zones) are not, so use UTC.
    offset = dt.utcoffset()
    assert offset is not None
    if offset % timedelta(minutes=1):
        return dt.astimezone(UTC)
    return dt.replace(tzinfo=UTC if not offset else timezone(offset))


def _check_instant(dt: datetime) -> datetime:
    try:
        in_range = _MIN_UTC <= dt <= _MAX_UTC
    except OverflowError:
        in_range = False
    if not in_range:
        raise PydanticCustomError(OUT_OF_RANGE, "timestamp is outside the supported range")
    return dt


def _parse_rfc3339(text: str) -> datetime:
    # Fast path for the common canonical form: the C parser is ~10x cheaper than
    # building the datetime by hand, and every consumer decodes every event.
    if _CANONICAL_RFC3339(text) is not None:
        try:
            fast = datetime.fromisoformat(text)
        except ValueError:
            pass  # out-of-range fields: the slow path below names the problem
        else:
            return fast if 2 <= fast.year <= 9998 else _check_instant(fast)
    m = _RFC3339.fullmatch(text)
    if m is None or m["off"] is None:
        if (m is not None and m["off"] is None) or _NAIVE_LOOKALIKE.fullmatch(text):
            raise PydanticCustomError(
                NAIVE_TIMESTAMP,
                f"timestamp must include a UTC offset (RFC 3339), {_TIMESTAMP_HINT}",
            )
        raise PydanticCustomError(
            INVALID_VALUE, f"must be an RFC 3339 timestamp with a UTC offset ({_TIMESTAMP_HINT})"
        )
    if m["off"] in ("Z", "z"):
        tz: timezone = UTC
    else:
        oh, om = int(m["oh"]), int(m["om"])
        if oh > 23 or om > 59:
            raise PydanticCustomError(INVALID_VALUE, "timestamp has an invalid UTC offset")
        delta = timedelta(hours=oh, minutes=om)
        # RFC 3339 "-00:00" means "UTC, local offset unknown": same instant as Z.
        tz = UTC if not delta else timezone(delta if m["sign"] == "+" else -delta)
    # Sub-microsecond digits are legal RFC 3339 but not representable; truncating
    # keeps the event instead of dead-lettering it over nanoseconds.
    micro = int((m["frac"] or "0")[:6].ljust(6, "0"))
    try:
        dt = datetime(
            int(m["y"]), int(m["mo"]), int(m["d"]),
            int(m["h"]), int(m["mi"]), int(m["s"]), micro, tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        raise PydanticCustomError(
            INVALID_VALUE, "timestamp is not a valid calendar date and time"
        ) from None
    return _check_instant(dt)


def _to_timestamp(value: object) -> datetime:
    if isinstance(value, str):
        return _parse_rfc3339(value)
    # Python callers building events directly may pass datetimes; JSON never can.
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise PydanticCustomError(
                NAIVE_TIMESTAMP, "timestamp must include a UTC offset (timezone-aware datetime)"
            )
        return _check_instant(_fixed_offset(value))
    # Unix numbers are rejected on purpose: seconds vs milliseconds is ambiguous.
    raise PydanticCustomError(
        WRONG_TYPE,
        f"timestamp must be an RFC 3339 string with a UTC offset, not {_json_kind(value)}",
    )


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ------------------------------------------------------------------- field types


def _score_range(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise PydanticCustomError(
                OUT_OF_RANGE, "must be between {low} and {high}", {"low": low, "high": high}
            )
        return value

    return AfterValidator(check)


Timestamp: TypeAlias = Annotated[datetime, BeforeValidator(_to_timestamp)]
# The text rules run after the constraints, so they judge the trimmed id that is stored.
Id: TypeAlias = Annotated[
    str,
    _Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=_MAX_ID_CHARS),
    ID_RULE,
]
Label: TypeAlias = Annotated[str, _Strict(), StringConstraints(max_length=_MAX_ID_CHARS), TEXT_RULE]
Flag: TypeAlias = Annotated[bool, _Strict()]
CsatScore: TypeAlias = Annotated[int, _Strict(), _score_range(1, 5)]
NpsScore: TypeAlias = Annotated[int, _Strict(), _score_range(0, 10)]
FiveScore: TypeAlias = Annotated[int, _Strict(), _score_range(1, 5)]
SchemaVersion: TypeAlias = Annotated[int, _Strict(), Field(ge=1)]


# ------------------------------------------------------------------------ models


class EventBase(BaseModel):
    """Envelope shared by every event type."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    type: str
    occurred_at: Timestamp
    source: Label | None = None
    schema_version: SchemaVersion | None = None


class TicketCreated(EventBase):
    type: Literal["ticket.created"] = "ticket.created"
    ticket_id: Id
    specialist_id: Id | None = None
    channel: Label | None = None


class TicketAssigned(EventBase):
    type: Literal["ticket.assigned"] = "ticket.assigned"
    ticket_id: Id
    specialist_id: Id


class TicketFirstResponse(EventBase):
    type: Literal["ticket.first_response"] = "ticket.first_response"
    ticket_id: Id
    specialist_id: Id


class TicketClosed(EventBase):
    type: Literal["ticket.closed"] = "ticket.closed"
    ticket_id: Id
    specialist_id: Id
    resolved: Flag


class TicketReopened(EventBase):
    type: Literal["ticket.reopened"] = "ticket.reopened"
    ticket_id: Id


class TicketFollowup(EventBase):
    type: Literal["ticket.followup"] = "ticket.followup"
    ticket_id: Id
    specialist_id: Id


class RecordAudited(EventBase):
    type: Literal["record.audited"] = "record.audited"
    specialist_id: Id
    ticket_id: Id | None = None
    accurate: Flag


class _CustomerSurvey(EventBase):
    # Scoring attributes a survey through its ticket when no specialist is given,
    # so one of the two is the minimum that can ever be counted.
    ticket_id: Id | None = None
    specialist_id: Id | None = None

    @model_validator(mode="after")
    def _needs_subject(self) -> Self:
        if self.ticket_id is None and self.specialist_id is None:
            raise PydanticCustomError(
                MISSING_FIELD, "ticket_id or specialist_id is required (at least one of them)"
            )
        return self


class SurveyCsat(_CustomerSurvey):
    type: Literal["survey.csat"] = "survey.csat"
    score: CsatScore


class SurveyNps(_CustomerSurvey):
    type: Literal["survey.nps"] = "survey.nps"
    score: NpsScore


class SurveyPeerReview(EventBase):
    type: Literal["survey.peer_review"] = "survey.peer_review"
    specialist_id: Id
    reviewer_id: Id
    score: FiveScore


class SurveyTraining(EventBase):
    type: Literal["survey.training"] = "survey.training"
    session_id: Id
    specialist_id: Id
    session_at: Timestamp
    score: FiveScore


Event: TypeAlias = Annotated[
    TicketCreated
    | TicketAssigned
    | TicketFirstResponse
    | TicketClosed
    | TicketReopened
    | TicketFollowup
    | RecordAudited
    | SurveyCsat
    | SurveyNps
    | SurveyPeerReview
    | SurveyTraining,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


# ---------------------------------------------------------------- error mapping

_WRONG_TYPE_REASONS: Final[dict[str, str]] = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be a boolean (true or false)",
    "datetime_type": "must be an RFC 3339 timestamp string",
}


def _field_path(loc: tuple[int | str, ...]) -> str:
    # A discriminated union prefixes every location with the tag that chose the model.
    parts = loc[1:] if loc and loc[0] in EVENT_TYPES else loc
    return ".".join(str(p) for p in parts) or WHOLE_MESSAGE


def _field_error(err: ErrorDetails) -> FieldError:
    kind: str = err["type"]
    field = _field_path(tuple(err["loc"]))
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind in ERROR_CODES:
        return FieldError(field, str(err["msg"]), kind)
    if kind == "missing":
        return FieldError(field, "is required", MISSING_FIELD)
    if kind == PYDANTIC_UNICODE_ERROR:
        return FieldError(field, unicode_error_reason(err.get("input")), INVALID_TEXT)
    if kind == "union_tag_not_found":
        return FieldError("type", "is required", MISSING_FIELD)
    if kind == "union_tag_invalid":
        return FieldError("type", f"unknown event type {_echo(ctx.get('tag'))}", UNKNOWN_TYPE)
    if kind == "string_too_short":
        return FieldError(field, "must not be empty", OUT_OF_RANGE)
    if kind == "string_too_long":
        limit = ctx.get("max_length")
        return FieldError(field, f"must be at most {limit} characters", OUT_OF_RANGE)
    if kind.startswith(("greater_than", "less_than")):
        return FieldError(
            field, str(err["msg"]).replace("Input should be", "must be"), OUT_OF_RANGE
        )
    if kind in _WRONG_TYPE_REASONS:
        return FieldError(field, _WRONG_TYPE_REASONS[kind], WRONG_TYPE)
    if kind.endswith("_type"):
        return FieldError(field, "has the wrong type", WRONG_TYPE)
    return FieldError(field, str(err["msg"]), INVALID_VALUE)


def _from_validation_error(exc: ValidationError) -> InvalidEvent:
    errors = exc.errors(include_url=False)
    return InvalidEvent(tuple(_field_error(e) for e in errors))


# ------------------------------------------------------------------ public I/O


def validate_event_obj(obj: object) -> Event:
    """Validate one already-parsed JSON value (e.g. an item of an HTTP array)."""
    if not isinstance(obj, dict):
        raise InvalidEvent.single(
            NOT_OBJECT, f"an event must be a JSON object, not {_json_kind(obj)}"
        )
    # Checked here rather than left to the union so the reason is specific and the
    # type tag is never used as a lookup key while unhashable or non-string.
    if "type" not in obj:
        raise InvalidEvent.single(MISSING_FIELD, "is required", field="type")
    event_type = obj["type"]
    if not isinstance(event_type, str):
        raise InvalidEvent.single(WRONG_TYPE, "must be a string", field="type")
    if event_type not in EVENT_TYPES:
        raise InvalidEvent.single(
            UNKNOWN_TYPE, f"unknown event type {_echo(event_type)}", field="type"
        )
    try:
        return EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise _from_validation_error(exc) from None


def decode_event(raw: bytes | str, *, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Decode one wire message into an Event, or raise InvalidEvent."""
    # Size is checked before parsing so a huge message costs no parse work; a str
    # longer than the limit in characters is over it in bytes too.
    if isinstance(raw, str):
        if len(raw) > max_bytes:
            raise _oversized(max_bytes)
        # surrogatepass: a lone surrogate is then named as a field below, not "not UTF-8".
        data = raw.encode("utf-8", "surrogatepass")
    else:
        data = raw
    if len(data) > max_bytes:
        raise _oversized(max_bytes)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _not_json(data, exc) from None
    return validate_event_obj(obj)


def _not_json(data: bytes, exc: orjson.JSONDecodeError) -> InvalidEvent:
    # A refusal caused by an unpaired surrogate is reported at the string that holds it.
    try:
        value = loads_with_surrogates(data)
    except ValueError:
        return InvalidEvent.single(NOT_JSON, f"message is not valid UTF-8 JSON ({exc})")
    path, found = next((path, m) for path, text in _strings(value) if (m := _SURROGATE(text)))
    reason = text_problem(found.group()) or "must not contain an unpaired surrogate"
    return InvalidEvent.single(INVALID_TEXT, reason, field=path or WHOLE_MESSAGE)


_SURROGATE: Final = re.compile("[\ud800-\udfff]").search


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def loads_with_surrogates(data: bytes) -> object:
    """Parse JSON that orjson refused only for unpaired surrogates (``\\ud800`` escapes or
    their CESU-8 bytes), so that the string holding one can be named; else ValueError.

    Slow (the standard library parser): for refused input only.
    """
    # As strict as orjson otherwise: only surrogates get past "surrogatepass" (any other
    # invalid UTF-8, a BOM, NaN/Infinity and overflowing numbers still fail), and the result
    # must hold a surrogate, so a document orjson refuses for another reason never parses.
    try:
        value = json.loads(
            data.decode("utf-8", "surrogatepass"),
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not any(_SURROGATE(text) for _, text in _strings(value)):
        raise ValueError("no unpaired surrogate in the document")
    return value


def _strings(value: object) -> Iterator[tuple[str, str]]:
    """(dotted path, string) for every key and string of a parsed JSON value, in order."""
    # Iterative: the value may be nested as deeply as the parser allowed.
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            yield path, item
        elif isinstance(item, dict):
            children: list[tuple[str, object]] = []
            for key, child in item.items():
                name = f"{path}.{scrub(key)}" if path else scrub(key)
                children += [(name, key), (name, child)]
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(
                reversed([(f"{path}.{i}" if path else str(i), c) for i, c in enumerate(item)])
            )


def _oversized(max_bytes: int) -> InvalidEvent:
    return InvalidEvent.single(OVERSIZED, f"message is larger than {max_bytes} bytes")


def encode_event(event: Event) -> bytes:
    """Canonical JSON for an event: sorted keys, no nulls, RFC 3339 timestamps."""
    # Every field is a plain JSON-able value, so the instance dict is what model_dump
    # returns (at a fraction of the cost: this runs for every event scoring applies).
    fields = {k: v for k, v in event.__dict__.items() if v is not None}
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def partition_key(event: Event) -> bytes:
    """kpi.events key: ticket_id, else specialist_id, else event_id.

    One ticket's events share a partition, so one consumer folds them into its state.
    """
    ticket_id = getattr(event, "ticket_id", None)
    if ticket_id:
        return str(ticket_id).encode()
    specialist_id = getattr(event, "specialist_id", None)
    if specialist_id:
        return str(specialist_id).encode()
    return event.event_id.encode()
