"""Fast paths of shared.events agree with the straightforward implementations they replace."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from shared.events import (
    EVENT_ADAPTER,
    INVALID_VALUE,
    NAIVE_TIMESTAMP,
    Event,
    InvalidEvent,
    decode_event,
    encode_event,
)
from shared.events.timestamps import (
    _NAIVE_LOOKALIKE,
    _TIMESTAMP_HINT,
    _check_instant,
    _parse_rfc3339,
)

# ------------------------------------------------------------- reference: timestamps

_RFC3339 = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"[Tt ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<off>[Zz]|(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>\d{2}))?",
    re.ASCII,
)


def _reference_parse(text: str) -> datetime:
    """_parse_rfc3339 as it was before the canonical-form regex (verbatim)."""
    m = _RFC3339.fullmatch(text)
    # Fast path for the common canonical form: the C parser is ~10x cheaper than
    # building the datetime by hand, and every consumer decodes every event.
    if m is not None and m["off"] is not None and text[10] == "T" and text[-1] != "z":
        try:
            fast = datetime.fromisoformat(text)
        except ValueError:
            pass  # out-of-range fields: the slow path below names the problem
        else:
            return fast if 2 <= fast.year <= 9998 else _check_instant(fast)
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


def _outcome(fn: Any, text: str) -> tuple[Any, ...]:
    try:
        dt = fn(text)
    except PydanticCustomError as exc:
        return ("error", exc.type, str(exc))
    return ("ok", dt, type(dt.tzinfo), dt.utcoffset())


two = st.integers(0, 99).map(lambda n: f"{n:02d}")
timestamps = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}",
    st.one_of(st.integers(0, 9999), st.sampled_from([1, 2, 9998, 9999, 2026])),
    st.one_of(two, st.sampled_from(["01", "12", "13", "00"])),
    st.one_of(two, st.sampled_from(["01", "28", "29", "31", "32"])),
    st.sampled_from(["T", "T", "t", " "]),
    st.one_of(two, st.sampled_from(["00", "23", "24"])),
    st.one_of(two, st.sampled_from(["00", "59", "60"])),
    st.one_of(two, st.sampled_from(["00", "59", "60"])),
    st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=10).map(lambda f: "." + f)),
    st.one_of(
        st.sampled_from(
            [
                "Z",
                "z",
                "",
                "+00:00",
                "-00:00",
                "+08:00",
                "-05:30",
                "+24:00",
                "+23:60",
                "+0800",
                "+08",
                "+08:00:00",
                "+08:00Z",
            ]
        ),
        st.builds(lambda sg, h, m: f"{sg}{h}:{m}", st.sampled_from("+-"), two, two),
    ),
)
odd_text = st.text(alphabet="0123456789-:TtZz+. ٣", max_size=32)


@settings(max_examples=3000, deadline=None)
@given(text=st.one_of(timestamps, odd_text))
def test_timestamp_parsing_matches_reference(text: str) -> None:
    assert _outcome(_parse_rfc3339, text) == _outcome(_reference_parse, text)


def test_reference_parse_is_not_vacuous() -> None:
    # The reference must itself take the C-parser path for the canonical form.
    got = _reference_parse("2026-03-01T09:30:00.5+08:00")
    assert got == datetime(2026, 3, 1, 1, 30, 0, 500000, tzinfo=UTC)
    assert got.utcoffset() == timedelta(hours=8)
    with pytest.raises(PydanticCustomError):
        _reference_parse("2026-03-01T09:30:00")


# --------------------------------------------------------------- reference: encoding


def _reference_encode(event: Event) -> bytes:
    return orjson.dumps(
        event.model_dump(exclude_none=True), option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
    )


ids = st.one_of(st.sampled_from(["T-1", "sp-liwei", "张伟", "x" * 128]), st.text(min_size=1))
aware = st.datetimes(
    min_value=datetime(1, 1, 3),
    max_value=datetime(9999, 12, 29),
    timezones=st.one_of(
        st.just(UTC),
        st.sampled_from([ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")]),
        st.integers(-23 * 3600, 23 * 3600).map(lambda s: timezone(timedelta(seconds=s))),
    ),
)
when = st.one_of(aware, aware.map(lambda d: d.isoformat()))
maybe = st.one_of(st.none(), ids)


def _event_dicts() -> st.SearchStrategy[dict[str, Any]]:
    env = {"event_id": ids, "occurred_at": when, "source": st.one_of(st.none(), st.text())}
    return st.one_of(
        st.fixed_dictionaries(
            {**env, "type": st.just("ticket.created"), "ticket_id": ids},
            optional={"specialist_id": maybe, "channel": st.one_of(st.none(), st.text())},
        ),
        st.fixed_dictionaries(
            {**env, "type": st.just("ticket.closed"), "ticket_id": ids, "specialist_id": ids}
            | {"resolved": st.booleans()},
            optional={"schema_version": st.integers(1, 2**70)},
        ),
        st.fixed_dictionaries({**env, "type": st.just("ticket.reopened"), "ticket_id": ids}),
        st.fixed_dictionaries(
            {**env, "type": st.just("survey.nps"), "ticket_id": ids, "score": st.integers(0, 10)},
            optional={"specialist_id": maybe},
        ),
        st.fixed_dictionaries(
            {
                **env,
                "type": st.just("survey.training"),
                "session_id": ids,
                "specialist_id": ids,
                "session_at": when,
                "score": st.integers(1, 5),
            }
        ),
        st.fixed_dictionaries(
            {
                **env,
                "type": st.just("record.audited"),
                "specialist_id": ids,
                "accurate": st.booleans(),
            },
            optional={"ticket_id": maybe},
        ),
    )


@settings(max_examples=1500, deadline=None)
@given(obj=_event_dicts())
def test_encoding_matches_model_dump(obj: dict[str, Any]) -> None:
    try:
        event = EVENT_ADAPTER.validate_python(obj)
    except Exception:
        return  # e.g. a whitespace-only id: nothing to encode
    outcomes = []
    for encode in (encode_event, _reference_encode):
        try:
            outcomes.append(encode(event))
        except TypeError as exc:  # an int beyond 64 bits: orjson refuses either way
            outcomes.append(f"{type(exc).__name__}: {exc}")
    assert outcomes[0] == outcomes[1]
    encoded = outcomes[0]
    if not isinstance(encoded, bytes):
        return
    # Canonical: decoding and re-encoding is stable.
    try:
        again = decode_event(encoded)
    except InvalidEvent:
        return  # an instant that only a Python datetime can carry (out of range in text)
    assert encode_event(again) == encoded
