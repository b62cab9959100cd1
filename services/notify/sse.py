"""Server-sent event framing of the alert stream and its Last-Event-ID resume rules (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

# A reconnecting client gets at most this many missed events; further behind, it gets a
# `reset` event instead and refetches `GET /v1/alerts` (the broadcaster's queue is as long).
REPLAY_MAX_EVENTS: Final = 1000
# Ids are PostgreSQL bigint identities; longer digit strings cannot be ours.
_MAX_ID_DIGITS: Final = 19
_ECHO_MAX: Final = 64

ResetReason = Literal["invalid_id", "unknown_id", "too_old"]


def parse_last_event_id(header: str | None, query: str | None) -> int | ResetReason | None:
    """The resume point: the `Last-Event-ID` header, else the `lastEventId` query parameter.

    None when neither is given (a first connection); "invalid_id" for anything that is not
    an event id of this stream.
    """
    raw = header if header is not None and header.strip() else query
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_ID_DIGITS:
        return "invalid_id"
    return int(raw)


@dataclass(frozen=True)
class Resume:
    """What a (re)connecting stream sends before going live."""

    replay: list[tuple[int, dict[str, Any]]]
    reset: ResetReason | None
    # Highest event id the client has seen or been told to skip; live events up to it
    # were covered by the replay (or the reset) and are not sent again.
    cursor: int


def plan_resume(
    last_id: int | ResetReason | None,
    newest: int,
    missed: list[tuple[int, dict[str, Any]]],
    limit: int = REPLAY_MAX_EVENTS,
) -> Resume:
    """Decide replay or reset from the client's id, the newest id and the missed events.

    `missed` holds the visible events with last_id < id <= newest, oldest first, fetched
    with a LIMIT of `limit + 1` so that "more than `limit`" is detectable.
    """
    if last_id is None:
        return Resume([], None, newest)
    if isinstance(last_id, str):
        return Resume([], last_id, newest)
    if last_id > newest:
        # Not an id this database handed out (restored backup, another installation).
        return Resume([], "unknown_id", newest)
    if len(missed) > limit:
        return Resume([], "too_old", newest)
    return Resume(list(missed), None, newest)


def frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One SSE event; orjson escapes newlines, so `data` is always a single line."""
    head = b"" if event_id is None else b"id: %d\n" % event_id
    return head + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def cursor_frame(event_id: int) -> bytes:
    """An id without data: EventSource records it as the last event id, dispatches nothing."""
    return b"id: %d\n: cursor\n\n" % event_id


def reset_data(reason: ResetReason, header: str | None, query: str | None) -> dict[str, Any]:
    given = header if header is not None and header.strip() else query
    return {
        "reason": reason,
        "last_event_id": None if given is None else given.strip()[:_ECHO_MAX],
        "max_replay": REPLAY_MAX_EVENTS,
        "refetch": "/v1/alerts",
    }


def revoked_reason(status: int) -> Literal["token_revoked", "forbidden"]:
    """Why a re-check refused an open stream: 401 (revoked, unknown) or 403 (another role)."""
    return "token_revoked" if status == 401 else "forbidden"


def revoked_frame(status: int, detail: str) -> bytes:
    """The last block of a stream whose token a periodic re-check refused. No id: the
    client's resume point stays where it was."""
    return frame("revoked", {"reason": revoked_reason(status), "status": status, "detail": detail})


def scope_frame(team_ids: Iterable[str]) -> bytes:
    """Sent when a re-check finds the supervisor's teams changed: from now on the stream
    carries these teams' alerts only (a client refetches its alert list)."""
    return frame("scope", {"team_ids": sorted(team_ids)})
