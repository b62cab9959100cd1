"""Strict decoding of wire messages into events (errors named per field) and canonical encoding."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, Final, NoReturn

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shared.events.errors import (
    ERROR_CODES,
    INVALID_VALUE,
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    OUT_OF_RANGE,
    OVERSIZED,
    UNKNOWN_TYPE,
    WHOLE_MESSAGE,
    WRONG_TYPE,
    FieldError,
    InvalidEvent,
    echo,
    json_kind,
)
from shared.events.models import EVENT_ADAPTER, EVENT_TYPES, Event
from shared.text import (
    INVALID_TEXT,
    PYDANTIC_UNICODE_ERROR,
    scrub,
    text_problem,
    unicode_error_reason,
)

MAX_EVENT_BYTES: Final = 64 * 1024

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
        return FieldError("type", f"unknown event type {echo(ctx.get('tag'))}", UNKNOWN_TYPE)
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
            NOT_OBJECT, f"an event must be a JSON object, not {json_kind(obj)}"
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
            UNKNOWN_TYPE, f"unknown event type {echo(event_type)}", field="type"
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
