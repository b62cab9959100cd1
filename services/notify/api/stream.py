"""Route: the server-sent event stream of alert transitions, replayed from Last-Event-ID."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response

from services.notify import queries, sse
from services.notify import repository as repo
from services.notify.api.deps import (
    READER_ROLES,
    reader,
    runtime_of,
    service_of,
    stream_slots_of,
)
from services.notify.sse import REPLAY_MAX_EVENTS
from shared import metrics
from shared.auth import Authenticator, Credential, Principal, authorise, credential_of
from shared.db import session_scope
from shared.streams import EventStreamResponse, StreamRefused
from shared.text import StorableText

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["notify"])

# A quiet stream sends a comment this often: proxies keep it open, and a client that went
# away is noticed.
_KEEPALIVE_SECONDS = 15.0
# A re-check that takes longer counts as failed (the stream goes on, the next one retries).
_RECHECK_TIMEOUT = 10.0

_STREAM_DESCRIPTION = f"""
Server-sent events of alert transitions (`event: alert`), each with an `id:` that is the
transition's row id in the database: increasing, and stable across restarts and replicas.

A reconnecting client sends the last id it saw as the `Last-Event-ID` header (what
EventSource does by itself) or, for polyfills that cannot, the `lastEventId` query
parameter; the header wins. It first receives, in order, the events it missed (those it is
allowed to see), then the live ones, without duplicates. At most {REPLAY_MAX_EVENTS} events are
replayed: further behind, or with an id this server never issued, it receives one
`event: reset` (data `{{"reason", "last_event_id", "max_replay", "refetch"}}`) instead and
should refetch `GET /v1/alerts`. Without an id the stream starts live. A block with only an
`id:` line moves the client's resume point without being an event.

Streams are bounded: a token holds at most `KPI_STREAM_MAX_PER_TOKEN` open streams (429
beyond) and a notify process serves at most `KPI_NOTIFY_STREAM_MAX_SUBSCRIBERS` (503 beyond),
both answered with `Retry-After` and a JSON `{{"detail", "reason", "limit"}}`. Every
`KPI_STREAM_RECHECK_SECONDS` the token is looked up again: revoked (or no longer allowed), the
stream's last block is `event: revoked` (data `{{"reason": "token_revoked"|"forbidden",
"status", "detail"}}`, no id) and it closes; a supervisor whose teams changed gets
`event: scope` (data `{{"team_ids"}}`) and from then on only those teams' alerts.
"""

_LIMITED = {"description": "Too many open streams", "content": {"application/json": {}}}
_EVENTS = {
    "description": "An endless `text/event-stream` (see above); never JSON.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


@router.get(
    "/alerts/stream",
    summary="Server-sent events of alert transitions",
    description=_STREAM_DESCRIPTION,
    status_code=200,
    response_class=EventStreamResponse,
    responses={200: _EVENTS, 429: _LIMITED, 503: _LIMITED},
)
async def alert_stream(
    request: Request,
    # No max_length: a 422 would stop EventSource reconnecting; a bad id gets `reset`. Only
    # unstorable text is a 422 (`reset` would echo it): EventSource never sends a NUL, it
    # ignores an `id:` field holding one, and this stream's ids are digits.
    last_event_id_query: StorableText | None = Query(
        default=None,
        alias="lastEventId",
        description="Resume point for clients that cannot send the Last-Event-ID header.",
    ),
    last_event_id: StorableText | None = Header(
        default=None,
        description="Id of the last event received; the missed ones are replayed first.",
    ),
    principal: Principal = Depends(reader),
) -> Response:
    svc = service_of(request)
    # The guard authenticated this request with it: a token, or a dashboard session.
    credential = credential_of(request.headers) or Credential("bearer", "")
    try:
        free_slot = stream_slots_of(request).acquire(credential.secret)
    except StreamRefused as refused:
        logger.info("alert stream for %s refused: %s", principal.subject, refused.reason)
        return refused.response()
    # Subscribe before reading the database: an event committed in between is then either
    # in the replay or in the queue (or both: the cursor drops the second copy).
    sub = svc.broadcaster.subscribe()

    def release() -> None:
        svc.broadcaster.unsubscribe(sub)
        free_slot()

    try:
        wanted = sse.parse_last_event_id(last_event_id, last_event_id_query)
        async with session_scope(runtime_of(request).sessionmaker) as session:
            conn = await repo.raw_connection(session)
            newest = await queries.newest_event_id(conn)
            missed: list[tuple[int, dict[str, Any]]] = []
            if isinstance(wanted, int) and wanted < newest:
                teams = None if principal.is_admin else sorted(principal.team_ids)
                missed = await queries.events_between(
                    conn, wanted, newest, teams, sse.REPLAY_MAX_EVENTS + 1
                )
        resume = sse.plan_resume(wanted, newest, missed)
    except BaseException:
        release()
        raise
    if resume.reset is not None:
        logger.info(
            "alert stream for %s: %s resume point, sent reset", principal.subject, resume.reset
        )
    access = _Access(request, credential, principal)
    recheck_every = runtime_of(request).settings.stream_recheck_seconds

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 3000\n: connected\n\n"
            last = wanted if isinstance(wanted, int) else None
            for replayed_id, data in resume.replay:
                yield sse.frame("alert", data, replayed_id)
                last = replayed_id
            if resume.reset is not None:
                reset = sse.reset_data(resume.reset, last_event_id, last_event_id_query)
                yield sse.frame("reset", reset, resume.cursor)
            elif last is None or last < resume.cursor:
                yield sse.cursor_frame(resume.cursor)
            cursor = resume.cursor
            clock = asyncio.get_running_loop().time
            beat_at = clock() + _KEEPALIVE_SECONDS
            check_at = clock() + recheck_every
            while True:
                if clock() >= check_at:
                    notice = await access.recheck()
                    check_at = clock() + recheck_every
                    if notice is not None:
                        yield notice
                    if access.principal is None:
                        return  # the revoked frame was the last one
                if clock() >= beat_at:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    beat_at = clock() + _KEEPALIVE_SECONDS
                try:
                    event_id, event = await asyncio.wait_for(
                        sub.queue.get(), max(0.0, min(beat_at, check_at) - clock())
                    )
                except TimeoutError:
                    continue
                if sub.lagged:
                    return  # events were dropped for us; the client resumes from its last id
                if event_id is not None:
                    # Ids are in commit order (repository.EVENTS_LOCK): one at or below the
                    # cursor was queued while the replay was read and has been sent already.
                    if event_id <= cursor:
                        continue
                    cursor = event_id
                if access.can_see_team(event.get("team_id")):
                    yield sse.frame("alert", event, event_id)
                    beat_at = clock() + _KEEPALIVE_SECONDS
        finally:
            release()

    return EventStreamResponse(events(), release)


class _Access:
    """What an open stream may carry, re-checked against the token store every
    `KPI_STREAM_RECHECK_SECONDS`: a revoked token ends it, a team change rescopes it."""

    def __init__(self, request: Request, credential: Credential, principal: Principal) -> None:
        self._authenticator: Authenticator = request.app.state.authenticator
        self._credential = credential
        self.principal: Principal | None = principal

    def can_see_team(self, team_id: str | None) -> bool:
        return self.principal is not None and self.principal.can_see_team(team_id)

    async def recheck(self) -> bytes | None:
        """The block to send, if any; afterwards `principal` is None when the stream ends."""
        before = self.principal
        assert before is not None
        try:
            # max_age=0: the token store itself, not the few-second cache of ordinary routes.
            now = await asyncio.wait_for(
                authorise(self._authenticator, self._credential, READER_ROLES, max_age=0),
                _RECHECK_TIMEOUT,
            )
        except HTTPException as exc:
            self.principal = None
            reason = sse.revoked_reason(exc.status_code)
            logger.info("alert stream for %s ended: %s", before.subject, reason)
            metrics.STREAMS_ENDED.labels("notify", reason).inc()
            return sse.revoked_frame(exc.status_code, str(exc.detail))
        except Exception as exc:
            # The token store is unreachable or slow: the stream keeps its last verified
            # scope and the next re-check tries again (its alerts come from that database).
            logger.warning(
                "alert stream re-check for %s failed: %s", before.subject, type(exc).__name__
            )
            return None
        self.principal = now
        if now.is_admin or now.team_ids == before.team_ids:
            return None
        logger.info("alert stream for %s now scoped to teams %s", now.subject, sorted(now.team_ids))
        return sse.scope_frame(now.team_ids)
