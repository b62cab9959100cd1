"""Storable text: the one rule for outside strings that PostgreSQL, exports and logs keep."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Final, TypeAlias

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

__all__ = [
    "ID_RULE",
    "INVALID_TEXT",
    "PYDANTIC_UNICODE_ERROR",
    "TEXT_RULE",
    "StorableId",
    "StorableText",
    "id_problem",
    "scrub",
    "text_problem",
    "unicode_error_reason",
]

# Stable error code (metric label, dead-letter reason, 422 ``type``); shared.events lists it.
INVALID_TEXT: Final = "invalid_text"
# pydantic-core refuses a str holding an unpaired surrogate itself, before TEXT_RULE or
# ID_RULE run, with this error type; it is reported as INVALID_TEXT all the same.
PYDANTIC_UNICODE_ERROR: Final = "string_unicode"

# PostgreSQL text and jsonb cannot hold U+0000, and UTF-8 (the database, the broker, every
# JSON encoder here) cannot encode an unpaired surrogate: no stored string may carry either.
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
# Ids and names also exclude the C0/C1 controls and DEL (SPEC; log injection, invisible in
# the dashboard, openpyxl refuses C0 in an XLSX cell). Everything else (format characters,
# U+2028, private use, noncharacters, unassigned code points) is stored and logged intact;
# the XLSX export replaces what XML 1.0 cannot carry (U+FFFE/U+FFFF) cell by cell.
_NOT_ID = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _describe(char: str) -> str:
    code = ord(char)
    if code == 0:
        return "U+0000 (NUL)"
    if 0xD800 <= code <= 0xDFFF:
        return f"an unpaired surrogate U+{code:04X}"
    return f"the control character U+{code:04X}"


def _first(value: str, search: Callable[[str], re.Match[str] | None]) -> str | None:
    # isprintable() is one pass in C that holds for nearly every real value and implies
    # that none of the rejected characters (all non-printable) is present.
    if value.isprintable():
        return None
    found = search(value)
    return None if found is None else f"must not contain {_describe(found.group())}"


def text_problem(value: str) -> str | None:
    """Why ``value`` is not storable text (NUL, unpaired surrogate), or None."""
    return _first(value, _NOT_TEXT.search)


def id_problem(value: str) -> str | None:
    """Why ``value`` is not a storable id or name (also control characters), or None."""
    return _first(value, _NOT_ID.search)


def unicode_error_reason(value: object) -> str:
    """The reason to give for a PYDANTIC_UNICODE_ERROR on ``value``, worded like the rules."""
    reason = text_problem(value) if isinstance(value, str) else None
    return reason or "must be valid Unicode text"


def _validator(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        # Inlined fast path: this runs for every id of every event ingest and scoring decode.
        if value.isprintable():
            return value
        reason = problem(value)
        if reason is not None:
            raise PydanticCustomError(INVALID_TEXT, reason)
        return value

    return AfterValidator(check)


# Pydantic metadata for composing with other constraints, e.g.
# Annotated[str, StringConstraints(strip_whitespace=True), ID_RULE]: constraints first, so
# the rule sees the value as it will be stored.
TEXT_RULE: Final = _validator(text_problem)
ID_RULE: Final = _validator(id_problem)

StorableText: TypeAlias = Annotated[str, TEXT_RULE]
StorableId: TypeAlias = Annotated[str, ID_RULE]


def scrub(value: str) -> str:
    """``value`` with NUL and unpaired surrogates replaced by U+FFFD, for echoing it back."""
    return value if value.isprintable() else _NOT_TEXT.sub("\ufffd", value)
