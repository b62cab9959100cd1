"""Stored-state codec: the JSON documents of ticket (v3, reading v2 and v1) and session states."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final, Protocol, TypeVar

from services.scoring.kpi.marks import (
    BY_ORDER,
    Closure,
    Feedback,
    Mark,
    TicketSurvey,
    req_str,
)

# Training sessions are stored as v1 documents; tickets as v3 (compact) and still read v2/v1.
# v3 is v2 plus the channel; it also says the ticket's shares of the channel breakdown and
# of the time distributions are stored (a v2 ticket's breakdown share sits in channel
# ``unknown``, put there by migration 0017, and it has no distribution share yet).
_STATE_VERSION: Final = 1
TICKET_STATE_VERSION: Final = 3
COMPACT_VERSIONS: Final = frozenset({2, 3})


class StoredTicket(Protocol):
    """The fields of a ticket state that its document holds."""

    ticket_id: str
    created: list[Mark]
    assigned: list[Mark]
    first_response: Mark | None
    closures: list[Closure]
    reopens: list[Mark]
    followed_up: bool
    surveys: list[TicketSurvey]
    named_channel: tuple[str, str] | None
    absorbed: set[str]


class StoredSession(Protocol):
    """The fields of a training-session state that its document holds."""

    session_id: str
    feedback: list[Feedback]


T = TypeVar("T", bound=StoredTicket)
S = TypeVar("S", bound=StoredSession)

_MINUTE: Final = timedelta(minutes=1)
# Offsets seen to be whole minutes (few distinct ones exist); UTC is checked by identity.
_MINUTE_OFFSETS: set[tzinfo] = set()


def ts_for_orjson(value: datetime) -> datetime | str:
    """``value`` where orjson.dumps renders it exactly as ``iso`` would, else ``iso(value)``.

    orjson formats an aware datetime like isoformat() in C, several times cheaper, but
    truncates sub-minute UTC offsets (which event timestamps never have).
    """
    tz = value.tzinfo
    if type(value) is not datetime:
        return value.isoformat()
    if tz is UTC or tz in _MINUTE_OFFSETS:
        return value
    offset = value.utcoffset()
    if offset is None or offset % _MINUTE or type(tz) is not timezone:
        return value.isoformat()
    _MINUTE_OFFSETS.add(tz)
    return value


def _rows(data: Mapping[str, Any], name: str) -> list[list[Any]]:
    rows = data.get(name, [])
    if not isinstance(rows, list) or not all(map(_is_list, rows)):
        raise ValueError(f"state field {name!r} must be a list of arrays")
    return rows


_is_list: Final = list.__instancecheck__


def _marks(data: Mapping[str, Any], name: str) -> list[Mark]:
    """``[Mark.from_row(r) for r in _rows(data, name)]``, checks inlined for valid rows."""
    out: list[Mark] = []
    for row in _rows(data, name):
        if len(row) >= 3:
            event_id, at, who = row[0], row[1], row[2]
            if type(event_id) is str and type(at) is str and (who is None or type(who) is str):
                parsed = datetime.fromisoformat(at)
                if parsed.tzinfo is not None:
                    out.append(Mark(event_id, parsed, who))
                    continue
        out.append(Mark.from_row(row))  # raises the error the row deserves
    return out


def _check_version(data: Mapping[str, Any]) -> None:
    if data.get("v") != _STATE_VERSION:
        raise ValueError(f"unsupported state version {data.get('v')!r} (expected {_STATE_VERSION})")


# -- tickets ---------------------------------------------------------------------------


def ticket_document(state: StoredTicket, ts: Callable[[datetime], Any]) -> dict[str, Any]:
    """The v3 document of ``state`` (see :func:`_ticket_v2`); equal states give equal ones."""
    # Empty, false and null fields are left out: most tickets have no assignment,
    # reopen, survey or absorbed id, and every stored byte is written again per update.
    doc: dict[str, Any] = {"v": TICKET_STATE_VERSION, "t": state.ticket_id}
    if state.created:
        doc["c"] = _mark_rows(state.created, ts)
    if state.assigned:
        doc["a"] = _mark_rows(state.assigned, ts)
    first = state.first_response
    if first is not None:
        at = ts(first.occurred_at)
        who = first.specialist_id
        doc["f"] = [first.event_id, at] if who is None else [first.event_id, at, who]
    closures = state.closures
    if closures:
        if len(closures) > 1:
            closures = sorted(closures, key=BY_ORDER)
        doc["x"] = [[c.event_id, ts(c.occurred_at), c.specialist_id, c.resolved] for c in closures]
    if state.reopens:
        doc["o"] = _mark_rows(state.reopens, ts)
    if state.followed_up:
        doc["u"] = True
    surveys = state.surveys
    if surveys:
        if len(surveys) > 1:
            surveys = sorted(surveys, key=BY_ORDER)
        doc["s"] = [
            [s.event_id, s.kind, ts(s.occurred_at), s.score]
            if s.specialist_id is None
            else [s.event_id, s.kind, ts(s.occurred_at), s.score, s.specialist_id]
            for s in surveys
        ]
    named = state.named_channel
    if named is not None:
        doc["n"] = [named[0], named[1]]
    if state.absorbed:
        doc["b"] = sorted(state.absorbed)
    return doc


def load_ticket(state: T, data: Mapping[str, Any]) -> T:
    """Fill the empty ``state`` from a v3, v2 or v1 document; ValueError when malformed."""
    try:
        version = data.get("v")
        if version == TICKET_STATE_VERSION or version == 2:
            return _ticket_v2(state, data)
        if version == 1:
            return _ticket_v1(state, data)
        raise ValueError(
            f"unsupported ticket state version {version!r} (expected 1 or {TICKET_STATE_VERSION})"
        )
    except (IndexError, TypeError) as exc:
        raise ValueError(f"malformed ticket state: {exc}") from None


def _mark_rows(rows: list[Mark], ts: Callable[[datetime], Any]) -> list[list[Any]]:
    if len(rows) > 1:
        rows = sorted(rows, key=BY_ORDER)
    # A mark without specialist (every reopen, some creations) is stored without the null.
    return [
        [m.event_id, ts(m.occurred_at)]
        if m.specialist_id is None
        else [m.event_id, ts(m.occurred_at), m.specialist_id]
        for m in rows
    ]


def _ticket_v1(state: T, data: Mapping[str, Any]) -> T:
    """A ticket state as the first release stored it (long keys, every field present)."""
    first = data.get("first_response")
    if first is not None and not isinstance(first, list):
        raise ValueError("state field 'first_response' must be an array or null")
    followed_up = data.get("followed_up", False)
    if not isinstance(followed_up, bool):
        raise ValueError("state field 'followed_up' must be a bool")
    absorbed = data.get("absorbed", [])
    if not isinstance(absorbed, list):
        raise ValueError("state field 'absorbed' must be a list")
    state.ticket_id = req_str(data.get("ticket_id"))
    state.created = _marks(data, "created")
    state.assigned = _marks(data, "assigned")
    state.first_response = None if first is None else Mark.from_row(first)
    state.closures = [Closure.from_row(r) for r in _rows(data, "closed")]
    state.reopens = _marks(data, "reopened")
    state.followed_up = followed_up
    state.surveys = [TicketSurvey.from_row(r) for r in _rows(data, "surveys")]
    state.absorbed = {req_str(i) for i in absorbed}
    return state


def _ticket_v2(state: T, data: Mapping[str, Any]) -> T:
    """A v3 or v2 ticket state: ``{"v": 3, "t": ticket_id}`` plus only the non-empty fields.

    ``c`` created, ``a`` assigned, ``o`` reopened: ``[[event_id, iso_ts(, specialist)]]``
    (no third cell = no specialist); ``f`` first response: one such row; ``x`` closures:
    ``[[event_id, iso_ts, specialist, resolved]]``; ``s`` surveys:
    ``[[event_id, "csat"|"nps", iso_ts, score(, specialist)]]``; ``u``: true when followed
    up; ``b``: absorbed event ids; ``n`` (v3): ``[event_id, channel]`` of the earliest
    creation naming a channel (a v2 document has none: channel unknown). Timestamps keep
    the offset they arrived with, so a state round-trips exactly. Other keys (the
    handler's ``rh``) are ignored.
    """
    state.ticket_id = req_str(data.get("t"))
    rows = data.get("c")
    if rows is not None:
        state.created = _v2_marks(rows, "c")
    rows = data.get("a")
    if rows is not None:
        state.assigned = _v2_marks(rows, "a")
    first = data.get("f")
    if first is not None:
        state.first_response = _v2_marks([first], "f")[0]
    rows = data.get("x")
    if rows is not None:
        closures = state.closures
        for row in _v2_rows(rows, "x"):
            if len(row) == 4:
                event_id, at, who, resolved = row
                if (
                    type(event_id) is str
                    and type(at) is str
                    and type(who) is str
                    and type(resolved) is bool
                ):
                    parsed = datetime.fromisoformat(at)
                    if parsed.tzinfo is not None:
                        closures.append(Closure(event_id, parsed, who, resolved))
                        continue
            closures.append(Closure.from_row(row))  # raises the error the row deserves
    rows = data.get("o")
    if rows is not None:
        state.reopens = _v2_marks(rows, "o")
    followed_up = data.get("u", False)
    if type(followed_up) is not bool:
        raise ValueError("state field 'u' (followed up) must be a bool")
    state.followed_up = followed_up
    rows = data.get("s")
    if rows is not None:
        state.surveys = [TicketSurvey.from_row(r) for r in _v2_rows(rows, "s")]
    absorbed = data.get("b")
    if absorbed is not None:
        if type(absorbed) is not list:
            raise ValueError("state field 'b' (absorbed) must be a list")
        state.absorbed = {req_str(i) for i in absorbed}
    named = data.get("n")
    if named is not None:
        if type(named) is not list or len(named) != 2:
            raise ValueError("state field 'n' (channel) must be [event_id, channel]")
        state.named_channel = (req_str(named[0]), req_str(named[1]))
    return state


def _v2_rows(rows: object, name: str) -> list[list[Any]]:
    if type(rows) is not list or not all(map(_is_list, rows)):
        raise ValueError(f"state field {name!r} must be a list of arrays")
    return rows


def _v2_marks(rows: object, name: str) -> list[Mark]:
    out: list[Mark] = []
    for row in _v2_rows(rows, name):
        size = len(row)
        if size == 2 or size == 3:
            event_id, at = row[0], row[1]
            who = row[2] if size == 3 else None
            if type(event_id) is str and type(at) is str and (who is None or type(who) is str):
                parsed = datetime.fromisoformat(at)
                if parsed.tzinfo is not None:
                    out.append(Mark(event_id, parsed, who))
                    continue
        # Raises the error the row deserves (or accepts e.g. a str subclass).
        out.append(Mark.from_row(row if size != 2 else [*row, None]))
    return out


# -- training sessions -----------------------------------------------------------------


def session_document(session: StoredSession, ts: Callable[[datetime], Any]) -> dict[str, Any]:
    """The v1 document of ``session``, feedback in event order."""
    return {
        "v": _STATE_VERSION,
        "session_id": session.session_id,
        "feedback": [
            [f.event_id, ts(f.occurred_at), f.trainer, ts(f.session_at), f.score]
            for f in sorted(session.feedback, key=BY_ORDER)
        ],
    }


def load_session(session: S, data: Mapping[str, Any]) -> S:
    """Fill the empty ``session`` from its document; ValueError when malformed."""
    try:
        _check_version(data)
        session.session_id = req_str(data.get("session_id"))
        session.feedback = [Feedback.from_row(r) for r in _rows(data, "feedback")]
        return session
    except (IndexError, TypeError) as exc:
        raise ValueError(f"malformed training session state: {exc}") from None
