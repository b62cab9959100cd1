"""RFC 9457 problem details: the one shape of every HTTP error answer of the three services.

Pure (pydantic only): the model, the kinds of problem and the builders. The FastAPI side (the
exception handlers, the response class, the HTTP guard's raw answers) is
``shared.http_problems``; the kinds are documented for clients in docs/errors.md.

Everything a builder is given may come from the request (a path id, a body key, a value in
a message): strings are scrubbed (no NUL or unpaired surrogate is echoed, so the answer
always encodes) and capped, so an error answer is never larger than a few kilobytes per
field error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared.text import scrub

MEDIA_TYPE: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:kpi:problem:"
# The field name of an error about the whole body (or the whole event): JSONPath's root, as
# in dead letters (shared.events.WHOLE_MESSAGE).
WHOLE_BODY: Final = "$"
# Where FastAPI says a parameter came from: the first element of its ``loc``.
LOCATIONS: Final = frozenset({"body", "query", "path", "header", "cookie"})
MAX_TEXT: Final = 1000  # characters of a detail or a message
MAX_NAME: Final = 200  # characters of one element of a location
MAX_ERRORS: Final = 100  # field errors listed; the detail still counts them all
_ELLIPSIS: Final = "…"


@dataclass(frozen=True)
class Kind:
    """One kind of problem: its ``type`` URI, fixed ``title``, usual status and default code."""

    slug: str
    status: int
    title: str

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug

    @property
    def code(self) -> str:
        return self.slug.replace("-", "_")


BAD_REQUEST: Final = Kind("bad-request", 400, "Malformed request")
UNAUTHENTICATED: Final = Kind("unauthenticated", 401, "Authentication required")
FORBIDDEN: Final = Kind("forbidden", 403, "Not allowed")
NOT_FOUND: Final = Kind("not-found", 404, "Not found")
METHOD_NOT_ALLOWED: Final = Kind("method-not-allowed", 405, "Method not allowed")
CONFLICT: Final = Kind("conflict", 409, "Conflict with the current state")
BODY_TOO_LARGE: Final = Kind("body-too-large", 413, "Request body too large")
UNSUPPORTED_MEDIA_TYPE: Final = Kind("unsupported-media-type", 415, "Unsupported media type")
INVALID_REQUEST: Final = Kind("invalid-request", 422, "Invalid request")
RATE_LIMITED: Final = Kind("rate-limited", 429, "Too many requests")
INTERNAL: Final = Kind("internal", 500, "Internal server error")
UNAVAILABLE: Final = Kind("unavailable", 503, "Temporarily unavailable")
KINDS: Final = (
    BAD_REQUEST,
    UNAUTHENTICATED,
    FORBIDDEN,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    CONFLICT,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_REQUEST,
    RATE_LIMITED,
    INTERNAL,
    UNAVAILABLE,
)
_BY_STATUS: Final = {kind.status: kind for kind in KINDS}


class FieldError(BaseModel):
    """One offending input: where (FastAPI's ``loc``), its dotted name, why, and a code."""

    loc: list[str | int] = Field(description='Where, e.g. ["body", "aliases", "zendesk"].')
    field: str = Field(
        description="The field's dotted name without the location: `aliases.zendesk`, "
        "`[2].score` for the third event of a posted array, `$` for the whole body."
    )
    msg: str = Field(description="Why, in words.")
    type: str = Field(description="A machine code, e.g. `missing`, `invalid_text`.")


class Problem(BaseModel):
    """An error answer (RFC 9457, ``application/problem+json``); kinds in docs/errors.md.

    A kind may add members (RFC 9457 extensions), e.g. ``limit_bytes`` on a 413, ``limit``
    on a refused stream, the per-event ``results`` of a rejected batch of events.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="The problem kind, `urn:kpi:problem:<kind>` (docs/errors.md).")
    title: str = Field(description="The kind's fixed title.")
    status: int = Field(ge=100, le=599, description="The HTTP status of the answer.")
    detail: str = Field(description="What went wrong with this request, in words.")
    instance: str = Field(description="The request's path.")
    code: str = Field(description="A short machine code; the kind's own unless more precise.")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="The offending inputs; only for errors of the request's input."
    )


def kind_of(status: int) -> Kind:
    """The kind of an answer with this status; ``about:blank`` ones for statuses without one."""
    known = _BY_STATUS.get(status)
    if known is not None:
        return known
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return _Blank(phrase.lower().replace(" ", "-").replace("'", ""), status, phrase)


class _Blank(Kind):
    """A status the kinds above do not cover: RFC 9457's ``about:blank`` (title = phrase)."""

    @property
    def type(self) -> str:
        return "about:blank"


def text(value: object, limit: int = MAX_TEXT) -> str:
    """``value`` as echoable text: scrubbed (no NUL, no unpaired surrogate) and capped."""
    out = scrub(value if isinstance(value, str) else str(value))
    return out if len(out) <= limit else out[: limit - 1] + _ELLIPSIS


def scrubbed(value: Any) -> Any:
    """A JSON-like value with every string (keys too) scrubbed, for extension members."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {scrub(str(k)): scrubbed(v) for k, v in value.items()}
    return value


def _loc_part(part: object) -> str | int:
    if isinstance(part, int) and not isinstance(part, bool) and -(2**63) <= part < 2**63:
        return part
    return text(part, MAX_NAME)  # JSON encoders refuse integers beyond 64 bits


def field_name(loc: Sequence[str | int]) -> str:
    """The dotted name of ``loc`` without its location: ``["body", "goals", 0, "kpi"]`` is
    ``goals[0].kpi``, ``["body", 2, "score"]`` is ``[2].score``, ``["body"]`` is ``$``."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in LOCATIONS:
        parts = parts[1:]
    elif parts == ["body"] or not parts:
        return WHOLE_BODY
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name


def field_error(
    loc: Iterable[object], msg: object, type: object = "value_error", field: str | None = None
) -> FieldError:
    """A field error at ``loc``; ``field`` defaults to its dotted name (``field_name``)."""
    where = [_loc_part(p) for p in loc]
    name = text(field, MAX_TEXT) if field is not None else field_name(where)
    return FieldError(loc=where, field=name, msg=text(msg), type=text(type, MAX_NAME))


def field_errors(raw: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Field errors from FastAPI's or pydantic's error dicts (``loc``, ``msg``, ``type``).

    Their ``input``, ``ctx`` and ``url`` are dropped: an input may be huge, or a secret.
    """
    return [
        field_error(err.get("loc") or (), err.get("msg", ""), err.get("type", "value_error"))
        for err in raw
    ]


def summary(errors: Sequence[FieldError]) -> str:
    """One line naming the first field, its reason and the other fields, e.g.
    ``team_id: Field required; also name, colour``."""
    if not errors:
        return "the request is invalid"
    first = errors[0]
    line = f"{first.field}: {first.msg}"
    others = [name for name in dict.fromkeys(e.field for e in errors) if name != first.field]
    if others:
        line += "; also " + ", ".join(others[:3])
        line += f" and {len(others) - 3} more" if len(others) > 3 else ""
    return text(" ".join(line.split()))  # one line, whatever a name or reason holds


def problem(
    status: int,
    detail: object,
    *,
    instance: str,
    code: str | None = None,
    errors: Sequence[FieldError] | None = None,
    kind: Kind | None = None,
    **extensions: Any,
) -> Problem:
    """The problem of an answer with ``status``: its kind's type and title, ``detail``
    scrubbed and capped, ``code`` (default: the kind's) and any extension members."""
    kind = kind or kind_of(status)
    listed = list(errors[:MAX_ERRORS]) if errors is not None else None
    return Problem(
        type=kind.type,
        title=kind.title,
        status=status,
        detail=text(detail),
        instance=text(instance, MAX_TEXT),
        code=text(code or kind.code, MAX_NAME),
        errors=listed,
        **scrubbed(extensions),
    )


def invalid(
    errors: Sequence[FieldError],
    *,
    instance: str,
    detail: str | None = None,
    code: str | None = None,
    status: int = INVALID_REQUEST.status,
    **extensions: Any,
) -> Problem:
    """An input error (422 unless told): ``errors`` listed, the detail naming the first."""
    return problem(
        status,
        detail if detail is not None else summary(errors),
        instance=instance,
        code=code,
        errors=errors,
        **extensions,
    )


def encode(found: Problem) -> bytes:
    """The JSON body of ``found``, without ``errors`` when it has none."""
    leave_out = {"errors"} if found.errors is None else None
    return orjson.dumps(found.model_dump(mode="json", exclude=leave_out))
