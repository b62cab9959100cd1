"""RFC 3339 timestamps with a mandatory UTC offset, kept within a convertible range."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from pydantic_core import PydanticCustomError

from shared.events.errors import INVALID_VALUE, NAIVE_TIMESTAMP, OUT_OF_RANGE, WRONG_TYPE, json_kind

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


def to_timestamp(value: object) -> datetime:
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
        f"timestamp must be an RFC 3339 string with a UTC offset, not {json_kind(value)}",
    )
