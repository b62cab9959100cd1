"""Route: the server-sent event stream of alert transitions, replayed from Last-Event-ID."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from services.notify import queries, sse
from services.notify import repository as repo
from services.notify.api.deps import reader, runtime_of, service_of
from services.notify.sse import REPLAY_MAX_EVENTS
from shared.auth import Principal
from shared.db import session_scope
from shared.text import StorableText

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["notify"])

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
"""


@router.get(
    "/alerts/stream",
    summary="Server-sent events of alert transitions",
    description=_STREAM_DESCRIPTION,
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
    # Subscribe before reading the database: an event committed in between is then either
    # in the replay or in the queue (or both: the cursor drops the second copy).
    sub = svc.broadcaster.subscribe()
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
        svc.broadcaster.unsubscribe(sub)
        raise
    if resume.reset is not None:
        logger.info(
            "alert stream for %s: %s resume point, sent reset", principal.subject, resume.reset
        )

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
            while True:
                try:
                    event_id, event = await asyncio.wait_for(sub.queue.get(), 15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                if sub.lagged:
                    return  # events were dropped for us; the client resumes from its last id
                if event_id is not None:
                    # Ids are in commit order (repository.EVENTS_LOCK): one at or below the
                    # cursor was queued while the replay was read and has been sent already.
                    if event_id <= cursor:
                        continue
                    cursor = event_id
                if not principal.can_see_team(event.get("team_id")):
                    continue
                yield sse.frame("alert", event, event_id)
        finally:
            svc.broadcaster.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
