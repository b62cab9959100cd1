"""Routes: the delivery log and resending a failed delivery."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from services.notify.api.deps import config_of, not_found, reader, runtime_of, service_of
from services.notify.handlers.deliveries import (
    DeliveryResult,
    get_delivery,
    list_deliveries,
    resend_delivery,
)
from shared.auth import Principal
from shared.db import session_scope
from shared.notify_api import DeliveryDetail, DeliveryOut, DeliveryPage
from shared.text import StorableText

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["notify"])

DeliveryId = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="The delivery's id (`id` in the listings).")
]


def _delivery_error(result: DeliveryResult, delivery_id: int) -> HTTPException:
    if result is DeliveryResult.NOT_FOUND:
        return not_found("delivery", delivery_id)
    return HTTPException(
        409, detail=f"delivery {delivery_id} is not failed; only failed ones resend"
    )


@router.get(
    "/deliveries",
    summary="Deliveries (failed ones to resend), newest first",
    response_model=DeliveryPage,
)
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
        raise not_found("team", team)
    if team is not None:
        teams: list[str] | None = [team]
    else:
        teams = None if principal.is_admin else sorted(principal.team_ids)
    async with session_scope(runtime_of(request).sessionmaker) as session:
        items, next_cursor = await list_deliveries(
            session,
            config_of(request),
            status=status,
            team_ids=teams,
            cursor=None if cursor is None else int(cursor),
            limit=limit,
        )
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/deliveries/{delivery_id}",
    summary="One delivery with every attempt",
    response_model=DeliveryDetail,
)
async def delivery(
    request: Request,
    delivery_id: DeliveryId,
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    cfg = config_of(request)
    async with session_scope(runtime_of(request).sessionmaker) as session:
        result, out = await get_delivery(session, cfg, delivery_id, principal.can_see_team)
    if out is None:
        raise _delivery_error(result, delivery_id)
    return out


@router.post(
    "/deliveries/{delivery_id}/resend",
    summary="Send a failed delivery again (same delivery key, fresh retry budget)",
    response_model=DeliveryOut,
)
async def resend(
    request: Request,
    delivery_id: DeliveryId,
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    svc, cfg = service_of(request), config_of(request)
    async with session_scope(runtime_of(request).sessionmaker) as session:
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
