"""FastAPI application of the notify service: routes plus lifespan-owned resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from services.notify import repository as repo
from services.notify import sse
from services.notify.consumer import ScoresConsumer
from services.notify.handlers import (
    AckResult,
    DeliveryResult,
    NotifyConfig,
    Outcome,
    ack_alert,
    get_delivery,
    list_deliveries,
    resend_delivery,
    run_tick,
)
from services.notify.health_relay import HealthRelay
from services.notify.schemas import (
    AckIn,
    ChannelIn,
    ChannelOut,
    SilenceIn,
    masked_config,
    merge_secrets,
    validate_config,
)
from services.notify.sender import Sender, refresh_status_gauge
from services.notify.sse import REPLAY_MAX_EVENTS
from shared import health
from shared.auth import Principal, Role, require
from shared.db import session_scope, utcnow
from shared.runtime import Runtime, create_app
from shared.settings import Settings
from shared.text import StorableText

SERVICE = "notify"
logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
admin_only = require()
reader = require(Role.SUPERVISOR)


LiveEvent = tuple[int | None, dict[str, Any]]


class Subscription:
    """One SSE client's queue; `lagged` once an event had to be dropped for it."""

    def __init__(self, max_queue: int) -> None:
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(max_queue)
        self.lagged = False


class Broadcaster:
    """In-process fan-out of alert transitions to SSE subscribers (fed by LISTEN)."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._subscribers: set[Subscription] = set()
        self._max_queue = max_queue

    def subscribe(self) -> Subscription:
        sub = Subscription(self._max_queue)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, event_id: int | None, event: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait((event_id, event))
            except asyncio.QueueFull:
                # A stalled client must not stall everyone else: its stream ends and it
                # resumes from its Last-Event-ID, replayed from the database.
                sub.lagged = True

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def parse_notification(payload: str) -> LiveEvent | None:
    """NOTIFY payload -> (event id, event); ids ride in an {"id", "data"} envelope."""
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    if isinstance(msg.get("id"), int) and isinstance(msg.get("data"), dict):
        return msg["id"], msg["data"]
    # A bare event from a replica of the previous release, during a rolling upgrade.
    return None, msg


class NotifyService:
    """Objects the routes share; resources are only created in `start` (lifespan)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or utcnow
        self.broadcaster = Broadcaster()
        self.sender: Sender | None = None
        self.consumer: ScoresConsumer | None = None
        self.relay: HealthRelay | None = None
        self.cfg: NotifyConfig | None = None
        self._stopping = asyncio.Event()
        self.listening = False

    def committed(self, outcome: Outcome) -> None:
        if outcome.deliveries and self.sender is not None:
            self.sender.wake()

    async def start(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.cfg = cfg = NotifyConfig.from_settings(settings)
        self._stopping = asyncio.Event()
        if settings.notify_sender:
            self.sender = Sender(
                runtime.sessionmaker,
                cfg,
                clock=self.clock,
                send_timeout=settings.notify_send_timeout,
                lease=settings.notify_lease_seconds,
                per_channel=settings.notify_channel_concurrency,
            )
            runtime.spawn(self.sender.run(), "notify-sender")
            runtime.stoppers.append(self.sender.stop)
            sender = self.sender
            runtime.extra_checks["sender"] = lambda: None if sender.healthy else sender.last_error
        runtime.spawn(self._tick_loop(runtime, cfg), "notify-tick")
        self.relay = HealthRelay(
            runtime.sessionmaker,
            cfg,
            clock=self.clock,
            period=settings.notify_tick_seconds,
            on_enqueued=self.sender.wake if self.sender is not None else None,
        )
        runtime.spawn(self.relay.run(), "notify-health-relay")
        runtime.stoppers.append(self.relay.stop)
        runtime.spawn(self._listen_loop(settings), "notify-listen")
        self.consumer = ScoresConsumer(
            settings, runtime.sessionmaker, cfg, self.clock, self.committed
        )
        await self.consumer.start()
        runtime.spawn(self.consumer.run(), "notify-consumer")
        runtime.stoppers.append(self.consumer.stop)
        runtime.stoppers.append(self._stopping.set)
        consumer = self.consumer

        runtime.extra_checks["consumer"] = consumer.problem

    async def tick_once(self, runtime: Runtime, cfg: NotifyConfig) -> Outcome:
        total = Outcome()
        for _ in range(100):
            async with session_scope(runtime.sessionmaker) as session:
                outcome = await run_tick(session, cfg, self.clock())
            total.changed += outcome.changed
            total.notifications += outcome.notifications
            total.deliveries += outcome.deliveries
            self.committed(outcome)
            if outcome.changed == 0:
                break
        return total

    async def _tick_loop(self, runtime: Runtime, cfg: NotifyConfig) -> None:
        period = runtime.settings.notify_tick_seconds
        while not self._stopping.is_set():
            try:
                await self.tick_once(runtime, cfg)
                await refresh_status_gauge(runtime.sessionmaker)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("notify tick failed; next one in %.0fs", period)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), period)

    async def _listen_loop(self, settings: Settings) -> None:
        dsn = settings.database_dsn.replace("postgresql+asyncpg://", "postgresql://", 1)

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            parsed = parse_notification(payload)
            if parsed is not None:
                self.broadcaster.publish(*parsed)

        while not self._stopping.is_set():
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                await conn.add_listener(repo.ALERT_CHANNEL, on_notify)
                if self.relay is not None:
                    await conn.add_listener(health.NOTIFY_CHANNEL, self.relay.on_notify)
                    # Whatever was committed while we were not listening goes out now.
                    self.relay.wake()
                self.listening = True
                while not self._stopping.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("alert stream listener: %s; reconnecting", type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 2)
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)


def _svc(request: Request) -> NotifyService:
    svc: NotifyService = request.app.state.notify
    return svc


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _channel_out(ch: repo.ChannelRecord) -> ChannelOut:
    return ChannelOut(
        id=ch.id,
        name=ch.name,
        kind=ch.kind,
        team_id=ch.team_id,
        lang=ch.lang,
        enabled=ch.enabled,
        config=masked_config(ch.config),
        created_at=ch.created_at,
        updated_at=ch.updated_at,
    )


def _config_error(exc: ValidationError) -> RequestValidationError:
    # Answered by the shared 422 handler like any body error: pydantic-core's own refusal of
    # a lone surrogate (in an unknown config key) becomes invalid_text and whatever JSON
    # cannot carry is scrubbed. Inputs are left out: they may be secrets or token URLs.
    return RequestValidationError(
        [
            {
                "loc": ["body", "config", *[str(p) for p in e["loc"]]],
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors(include_input=False, include_url=False)
        ]
    )


def _unprocessable(field: str, msg: str) -> HTTPException:
    # "type" too: the OpenAPI documents FastAPI's ValidationError shape for every 422.
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": msg, "type": "value_error"}])


router = APIRouter(prefix="/v1", tags=["notify"])


# -- channels --------------------------------------------------------------------------


@router.post("/channels", status_code=201, response_model=ChannelOut)
async def create_channel(
    body: ChannelIn, request: Request, principal: Principal = Depends(admin_only)
) -> ChannelOut:
    try:
        config = validate_config(body.kind, body.config)
    except ValidationError as exc:
        raise _config_error(exc) from None
    now = utcnow()
    async with session_scope(_runtime(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        if body.team_id is not None and not await repo.team_exists(conn, body.team_id):
            raise _unprocessable("team_id", f"unknown team '{body.team_id}'")
        saved = await repo.save_channel(
            conn,
            repo.ChannelRecord(
                str(uuid.uuid4()),
                body.name,
                body.kind,
                body.team_id,
                body.lang,
                body.enabled,
                config,
                now,
                now,
            ),
        )
    logger.info("channel %s (%s) created by %s", saved.id, saved.kind, principal.subject)
    return _channel_out(saved)


@router.get("/channels", response_model=list[ChannelOut])
async def list_channels(
    request: Request, principal: Principal = Depends(reader)
) -> list[ChannelOut]:
    async with session_scope(_runtime(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        teams = None if principal.is_admin else sorted(principal.team_ids)
        rows = await repo.list_channels(conn, teams)
    return [_channel_out(r) for r in rows]


@router.get("/channels/{channel_id}", response_model=ChannelOut)
async def get_channel(
    channel_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> ChannelOut:
    async with session_scope(_runtime(request).sessionmaker) as session:
        row = await repo.get_channel(await repo.raw_connection(session), channel_id)
    if row is None or not (principal.is_admin or principal.can_see_team(row.team_id)):
        raise HTTPException(404, detail=f"channel '{channel_id}' not found")
    return _channel_out(row)


@router.put("/channels/{channel_id}", response_model=ChannelOut)
async def update_channel(
    channel_id: StorableText,
    body: ChannelIn,
    request: Request,
    principal: Principal = Depends(admin_only),
) -> ChannelOut:
    async with session_scope(_runtime(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        old = await repo.get_channel(conn, channel_id)
        if old is None:
            raise HTTPException(404, detail=f"channel '{channel_id}' not found")
        raw = merge_secrets(body.config, old.config) if body.kind == old.kind else body.config
        try:
            config = validate_config(body.kind, raw)
        except ValidationError as exc:
            raise _config_error(exc) from None
        if body.team_id is not None and not await repo.team_exists(conn, body.team_id):
            raise _unprocessable("team_id", f"unknown team '{body.team_id}'")
        saved = await repo.save_channel(
            conn,
            repo.ChannelRecord(
                channel_id,
                body.name,
                body.kind,
                body.team_id,
                body.lang,
                body.enabled,
                config,
                old.created_at,
                utcnow(),
            ),
        )
    logger.info("channel %s updated by %s", channel_id, principal.subject)
    return _channel_out(saved)


@router.delete("/channels/{channel_id}", status_code=204)
async def delete_channel(
    channel_id: StorableText, request: Request, principal: Principal = Depends(admin_only)
) -> Response:
    async with session_scope(_runtime(request).sessionmaker) as session:
        deleted = await repo.delete_channel(await repo.raw_connection(session), channel_id)
    if not deleted:
        raise HTTPException(404, detail=f"channel '{channel_id}' not found")
    logger.info("channel %s deleted by %s", channel_id, principal.subject)
    return Response(status_code=204)


# -- alerts ----------------------------------------------------------------------------

_ALERT_COLS = (
    'alert_id, specialist_id, kpi, episode, team_id, status, "window", value, qualified, '
    "grade, samples, started_at, resolved_at, acked_at, acked_by, updated_at"
)


def _alert_dict(r: Any) -> dict[str, Any]:
    return dict(r)


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
    svc = _svc(request)
    # Subscribe before reading the database: an event committed in between is then either
    # in the replay or in the queue (or both: the cursor drops the second copy).
    sub = svc.broadcaster.subscribe()
    try:
        wanted = sse.parse_last_event_id(last_event_id, last_event_id_query)
        async with session_scope(_runtime(request).sessionmaker) as session:
            conn = await repo.raw_connection(session)
            newest = await repo.newest_event_id(conn)
            missed: list[tuple[int, dict[str, Any]]] = []
            if isinstance(wanted, int) and wanted < newest:
                teams = None if principal.is_admin else sorted(principal.team_ids)
                missed = await repo.events_between(
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


@router.get("/alerts")
async def list_alerts(
    request: Request,
    state: Literal["open", "resolved"] | None = Query(default=None),
    team: StorableText | None = Query(default=None, max_length=128),
    specialist: StorableText | None = Query(default=None, max_length=128),
    kpi: StorableText | None = Query(default=None, max_length=40),
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    if team is not None and not principal.can_see_team(team):
        raise HTTPException(403, detail=f"no access to team '{team}'")
    where: list[str] = []
    args: list[Any] = []

    def add(cond: str, value: Any) -> None:
        args.append(value)
        where.append(cond.format(f"${len(args)}"))

    if state is not None:
        add("status = {}", "firing" if state == "open" else "resolved")
    if team is not None:
        add("team_id = {}", team)
    elif not principal.is_admin:
        add("team_id = ANY({}::text[])", sorted(principal.team_ids))
    if specialist is not None:
        add("specialist_id = {}", specialist)
    if kpi is not None:
        add("kpi = {}", kpi)
    args.append(limit)
    sql = (
        f"SELECT {_ALERT_COLS} FROM alerts"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY started_at DESC, alert_id LIMIT ${len(args)}"
    )
    async with session_scope(_runtime(request).sessionmaker) as session:
        rows = await (await repo.raw_connection(session)).fetch(sql, *args)
    return {"items": [_alert_dict(r) for r in rows]}


async def _visible_alert(request: Request, alert_id: str, principal: Principal) -> dict[str, Any]:
    async with session_scope(_runtime(request).sessionmaker) as session:
        row = await (await repo.raw_connection(session)).fetchrow(
            f"SELECT {_ALERT_COLS} FROM alerts WHERE alert_id = $1", alert_id
        )
    if row is None:
        raise HTTPException(404, detail=f"alert '{alert_id}' not found")
    if not principal.can_see_team(row["team_id"]):
        raise HTTPException(403, detail="the alert belongs to a team you do not supervise")
    return _alert_dict(row)


@router.get("/alerts/{alert_id}")
async def get_alert(
    alert_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> dict[str, Any]:
    return await _visible_alert(request, alert_id, principal)


@router.post("/alerts/{alert_id}/ack")
async def ack(
    alert_id: StorableText,
    request: Request,
    body: AckIn | None = None,
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    svc = _svc(request)
    async with session_scope(_runtime(request).sessionmaker) as session:
        result, _ = await ack_alert(
            session, alert_id, principal.subject, svc.clock(), principal.can_see_team
        )
    if result is AckResult.NOT_FOUND:
        raise HTTPException(404, detail=f"alert '{alert_id}' not found")
    if result is AckResult.FORBIDDEN:
        raise HTTPException(403, detail="the alert belongs to a team you do not supervise")
    if result is AckResult.NOT_FIRING:
        raise HTTPException(409, detail="the alert is not firing (resolved or superseded)")
    return await _visible_alert(request, alert_id, principal)


@router.get("/alerts/{alert_id}/deliveries")
async def alert_deliveries(
    alert_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> dict[str, Any]:
    await _visible_alert(request, alert_id, principal)
    async with session_scope(_runtime(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        rows = await conn.fetch(
            """
            SELECT d.id, d.delivery_key, d.channel_id, c.kind AS channel_kind, d.status,
                   d.attempts, d.next_attempt_at, d.last_error, d.created_at, d.sent_at,
                   d.resent_at, d.resent_by, cardinality(d.alert_ids) AS grouped_alerts
            FROM deliveries d LEFT JOIN channels c ON c.id = d.channel_id
            WHERE d.alert_ids @> ARRAY[$1]::varchar[]
            ORDER BY d.id
            """,
            alert_id,
        )
        by_delivery = await repo.attempt_logs(conn, [r["id"] for r in rows])
    items = []
    for r in rows:
        item = dict(r)
        item["attempt_log"] = by_delivery.get(r["id"], [])
        items.append(item)
    return {"alert_id": alert_id, "items": items}


# -- deliveries ------------------------------------------------------------------------

DeliveryId = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="The delivery's id (`id` in the listings).")
]


def _cfg(request: Request) -> NotifyConfig:
    cfg = _svc(request).cfg
    if cfg is None:  # only before the lifespan started the service
        raise HTTPException(503, detail="notify is starting")
    return cfg


def _delivery_error(result: DeliveryResult, delivery_id: int) -> HTTPException:
    if result is DeliveryResult.NOT_FOUND:
        return HTTPException(404, detail=f"delivery {delivery_id} not found")
    if result is DeliveryResult.FORBIDDEN:
        return HTTPException(403, detail="the delivery belongs to a team you do not supervise")
    return HTTPException(
        409, detail=f"delivery {delivery_id} is not failed; only failed ones resend"
    )


@router.get("/deliveries", summary="Deliveries (failed ones to resend), newest first")
async def deliveries(
    request: Request,
    status: Literal["pending", "sending", "sent", "failed"] | None = Query(
        default=None, description="Only deliveries in this state, e.g. failed."
    ),
    team: StorableText | None = Query(default=None, max_length=128),
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = Query(
        default=None,
        pattern=r"^[1-9][0-9]{0,17}$",
        description="`next_cursor` of the previous page.",
    ),
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    if team is not None and not principal.can_see_team(team):
        raise HTTPException(403, detail=f"no access to team '{team}'")
    if team is not None:
        teams: list[str] | None = [team]
    else:
        teams = None if principal.is_admin else sorted(principal.team_ids)
    async with session_scope(_runtime(request).sessionmaker) as session:
        items, next_cursor = await list_deliveries(
            session,
            _cfg(request),
            status=status,
            team_ids=teams,
            cursor=None if cursor is None else int(cursor),
            limit=limit,
        )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/deliveries/{delivery_id}", summary="One delivery with every attempt")
async def delivery(
    request: Request,
    delivery_id: DeliveryId,
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    cfg = _cfg(request)
    async with session_scope(_runtime(request).sessionmaker) as session:
        result, out = await get_delivery(session, cfg, delivery_id, principal.can_see_team)
    if out is None:
        raise _delivery_error(result, delivery_id)
    return out


@router.post(
    "/deliveries/{delivery_id}/resend",
    summary="Send a failed delivery again (same delivery key, fresh retry budget)",
)
async def resend(
    request: Request,
    delivery_id: DeliveryId,
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    svc, cfg = _svc(request), _cfg(request)
    async with session_scope(_runtime(request).sessionmaker) as session:
        result, out = await resend_delivery(
            session, cfg, delivery_id, principal.subject, svc.clock(), principal.can_see_team
        )
    if out is None:
        raise _delivery_error(result, delivery_id)
    logger.info(
        "delivery %d (key %s) resent by %s", delivery_id, out["delivery_key"], principal.subject
    )
    if svc.sender is not None:
        svc.sender.wake()
    return out


# -- silences --------------------------------------------------------------------------


@router.post("/silences", status_code=201)
async def create_silence(
    body: SilenceIn, request: Request, principal: Principal = Depends(reader)
) -> dict[str, Any]:
    if body.specialist_id is None and body.kpi is None:
        raise _unprocessable("specialist_id", "give specialist_id and/or kpi")
    svc = _svc(request)
    if body.until <= svc.clock():
        raise _unprocessable("until", "must be in the future")
    silence_id = str(uuid.uuid4())
    async with session_scope(_runtime(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        team: str | None = None
        if body.specialist_id is not None:
            team = await conn.fetchval(
                "SELECT team_id FROM specialists WHERE id = $1", body.specialist_id
            )
        if not principal.is_admin and (body.specialist_id is None or team is None):
            raise HTTPException(
                403, detail="supervisors silence specialists of their own teams only"
            )
        if not principal.can_see_team(team) and not principal.is_admin:
            raise HTTPException(403, detail="the specialist is not in a team you supervise")
        row = await conn.fetchrow(
            """
            INSERT INTO silences (id, specialist_id, kpi, team_id, until, comment, created_by,
                                  created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING id, specialist_id, kpi, team_id, until, comment, created_by, created_at
            """,
            silence_id,
            body.specialist_id,
            body.kpi,
            team,
            body.until,
            body.comment,
            principal.subject,
            svc.clock(),
        )
    return dict(row)


@router.get("/silences")
async def list_silences(
    request: Request,
    active: bool = Query(default=True, description="only silences not yet expired"),
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    svc = _svc(request)
    async with session_scope(_runtime(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        rows = await conn.fetch(
            """
            SELECT id, specialist_id, kpi, team_id, until, comment, created_by, created_at
            FROM silences
            WHERE ($1::timestamptz IS NULL OR until > $1)
              AND ($2::text[] IS NULL OR team_id = ANY($2::text[]))
            ORDER BY created_at, id
            """,
            svc.clock() if active else None,
            None if principal.is_admin else sorted(principal.team_ids),
        )
    return {"items": [dict(r) for r in rows]}


@router.delete("/silences/{silence_id}", status_code=204)
async def delete_silence(
    silence_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> Response:
    async with session_scope(_runtime(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        row = await conn.fetchrow(
            "SELECT team_id FROM silences WHERE id = $1 FOR UPDATE", silence_id
        )
        if row is None:
            raise HTTPException(404, detail=f"silence '{silence_id}' not found")
        if not principal.can_see_team(row["team_id"]):
            raise HTTPException(403, detail="the silence belongs to a team you do not supervise")
        await conn.execute("DELETE FROM silences WHERE id = $1", silence_id)
    return Response(status_code=204)


def build_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    service = NotifyService(clock)

    async def on_start(runtime: Runtime) -> None:
        await service.start(runtime)

    app = create_app(
        SERVICE,
        settings=settings,
        routers=[router],
        on_start=on_start,
        title="KPI notify service",
        description="Below-the-line alerts to supervisors.",
    )
    app.state.notify = service
    return app
