"""Routes: alerts (list, one, acknowledge) and the deliveries that carried one."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from services.notify import queries
from services.notify import repository as repo
from services.notify.api.deps import not_found, reader, runtime_of, service_of
from services.notify.handlers.ack import AckResult, ack_alert
from services.notify.schemas import AckIn
from shared.auth import Principal
from shared.db import session_scope
from shared.notify_api import AlertDeliveries, AlertList, AlertOut
from shared.text import StorableText

router = APIRouter(prefix="/v1", tags=["notify"])


async def _visible_alert(request: Request, alert_id: str, principal: Principal) -> dict[str, Any]:
    async with session_scope(runtime_of(request).sessionmaker) as session:
        row = await queries.get_alert(await repo.raw_connection(session), alert_id)
    if row is None or not principal.can_see_team(row["team_id"]):
        raise not_found("alert", alert_id)
    return row


@router.get("/alerts", response_model=AlertList)
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
        raise not_found("team", team)
    async with session_scope(runtime_of(request).sessionmaker) as session:
        items = await queries.list_alerts(
            await repo.raw_connection(session),
            status=None if state is None else ("firing" if state == "open" else "resolved"),
            team=team,
            team_ids=None if principal.is_admin else sorted(principal.team_ids),
            specialist=specialist,
            kpi=kpi,
            limit=limit,
        )
    return {"items": items}


@router.get("/alerts/{alert_id}", response_model=AlertOut)
async def get_alert(
    alert_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> dict[str, Any]:
    return await _visible_alert(request, alert_id, principal)


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
async def ack(
    alert_id: StorableText,
    request: Request,
    body: AckIn | None = None,
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    svc = service_of(request)
    async with session_scope(runtime_of(request).sessionmaker) as session:
        result, _ = await ack_alert(
            session, alert_id, principal.subject, svc.clock(), principal.can_see_team
        )
    if result is AckResult.NOT_FOUND:
        raise not_found("alert", alert_id)
    if result is AckResult.NOT_FIRING:
        raise HTTPException(409, detail="the alert is not firing (resolved or superseded)")
    return await _visible_alert(request, alert_id, principal)


@router.get("/alerts/{alert_id}/deliveries", response_model=AlertDeliveries)
async def alert_deliveries(
    alert_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> dict[str, Any]:
    await _visible_alert(request, alert_id, principal)
    async with session_scope(runtime_of(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        items = await queries.alert_deliveries(conn, alert_id)
        by_delivery = await queries.attempt_logs(conn, [r["id"] for r in items])
    for item in items:
        item["attempt_log"] = by_delivery.get(item["id"], [])
    return {"alert_id": alert_id, "items": items}
