"""Routes: notification channels (admins write, supervisors read their teams')."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import ValidationError

from services.notify import queries
from services.notify import repository as repo
from services.notify.api.deps import (
    admin_only,
    config_error,
    config_of,
    reader,
    runtime_of,
    service_of,
    unprocessable,
)
from services.notify.config import NotifyConfig
from services.notify.egress import EgressDenied, config_targets
from services.notify.schemas import (
    ChannelIn,
    masked_config,
    merge_secrets,
    validate_config,
)
from services.notify.sender import send_probe
from shared.auth import Principal
from shared.db import session_scope, utcnow
from shared.notify_api import ChannelOut, ChannelTestOut
from shared.text import StorableText

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["notify"])


def _check_policy(cfg: NotifyConfig, kind: str, config: dict[str, Any]) -> None:
    """422 for a target the egress policy refuses by its text, or a login without TLS.

    Names are judged again on what they resolve to at every send (services.notify.transport).
    """
    for field, host, port in config_targets(config):
        why = cfg.egress.check_target(host, port)
        if why is not None:
            raise unprocessable("config", field, msg=EgressDenied(why).reason)
    login = bool(config.get("username") and config.get("password"))
    plaintext = kind == "email" and login and not config.get("starttls")
    if plaintext and not cfg.smtp.allow_plaintext_login:
        raise unprocessable(
            "config",
            "starttls",
            msg="must be true when username and password are set: login without TLS "
            "is refused (KPI_NOTIFY_SMTP_ALLOW_PLAINTEXT_LOGIN=true allows it)",
        )


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


@router.post("/channels", status_code=201, response_model=ChannelOut)
async def create_channel(
    body: ChannelIn, request: Request, principal: Principal = Depends(admin_only)
) -> ChannelOut:
    try:
        config = validate_config(body.kind, body.config)
    except ValidationError as exc:
        raise config_error(exc) from None
    _check_policy(config_of(request), body.kind, config)
    now = utcnow()
    async with session_scope(runtime_of(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        if body.team_id is not None and not await queries.team_exists(conn, body.team_id):
            raise unprocessable("team_id", msg=f"unknown team '{body.team_id}'")
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
    async with session_scope(runtime_of(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        teams = None if principal.is_admin else sorted(principal.team_ids)
        rows = await queries.list_channels(conn, teams)
    return [_channel_out(r) for r in rows]


@router.get("/channels/{channel_id}", response_model=ChannelOut)
async def get_channel(
    channel_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> ChannelOut:
    async with session_scope(runtime_of(request).sessionmaker) as session:
        row = await queries.get_channel(await repo.raw_connection(session), channel_id)
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
    async with session_scope(runtime_of(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        old = await queries.get_channel(conn, channel_id)
        if old is None:
            raise HTTPException(404, detail=f"channel '{channel_id}' not found")
        raw = merge_secrets(body.config, old.config) if body.kind == old.kind else body.config
        try:
            config = validate_config(body.kind, raw)
        except ValidationError as exc:
            raise config_error(exc) from None
        _check_policy(config_of(request), body.kind, config)
        if body.team_id is not None and not await queries.team_exists(conn, body.team_id):
            raise unprocessable("team_id", msg=f"unknown team '{body.team_id}'")
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
    async with session_scope(runtime_of(request).sessionmaker) as session:
        deleted = await repo.delete_channel(await repo.raw_connection(session), channel_id)
    if not deleted:
        raise HTTPException(404, detail=f"channel '{channel_id}' not found")
    logger.info("channel %s deleted by %s", channel_id, principal.subject)
    return Response(status_code=204)


@router.post(
    "/channels/{channel_id}/test",
    response_model=ChannelTestOut,
    summary="Send a test message through the channel now and answer the attempt (admin)",
    description="One attempt through the channel's own message builder and the egress-checked "
    "transport, marked as a test ([TEST] title; generic webhook body `type: channel_test`). "
    "Disabled channels can be tested too. Not a delivery: nothing is queued or retried.",
)
async def send_channel_test(
    channel_id: StorableText, request: Request, principal: Principal = Depends(admin_only)
) -> ChannelTestOut:
    cfg = config_of(request)
    runtime = runtime_of(request)
    async with session_scope(runtime.sessionmaker) as session:
        row = await queries.get_channel(await repo.raw_connection(session), channel_id)
    if row is None:
        raise HTTPException(404, detail=f"channel '{channel_id}' not found")
    probe = await send_probe(
        row,
        cfg,
        requested_by=principal.subject,
        now=service_of(request).clock(),
        timeout=runtime.settings.notify_send_timeout,
    )
    result = probe.result
    logger.info(
        "channel %s (%s) test %s by %s: %s",
        row.id,
        row.kind,
        probe.delivery_key,
        principal.subject,
        "sent" if result.ok else f"failed: {result.error}",
    )
    return ChannelTestOut(
        channel_id=row.id,
        kind=row.kind,
        status="sent" if result.ok else "failed",
        http_status=result.http_status,
        error=result.error,
        permanent=result.permanent,
        test_id=probe.test_id,
        delivery_key=probe.delivery_key,
        sent_at=probe.sent_at,
        duration_ms=round(probe.duration_ms, 1),
    )
