"""Routes: silences that mute a specialist's and/or a KPI's notifications until a time.

A silence is scoped to the team its specialist was in when it was set: it mutes that
team's alerts only, and that team lists and deletes it. Admins' KPI-wide silences (no
specialist) span the organisation; every team lists them, only admins delete them.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from services.notify import queries
from services.notify import repository as repo
from services.notify.api.deps import (
    config_of,
    not_found,
    reader,
    runtime_of,
    service_of,
    unprocessable,
)
from services.notify.schemas import SilenceIn
from shared.auth import Principal
from shared.db import session_scope
from shared.notify_api import SilenceList, SilenceOut
from shared.text import StorableText

router = APIRouter(prefix="/v1", tags=["notify"])


@router.post("/silences", status_code=201, response_model=SilenceOut)
async def create_silence(
    body: SilenceIn, request: Request, principal: Principal = Depends(reader)
) -> dict[str, Any]:
    if body.specialist_id is None and body.kpi is None:
        raise unprocessable("specialist_id", msg="give specialist_id and/or kpi")
    svc = service_of(request)
    longest = config_of(request).silence_max
    now = svc.clock()
    if body.until <= now:
        raise unprocessable("until", msg="must be in the future")
    if body.until - now > longest:
        raise unprocessable(
            "until",
            msg=f"must be at most {longest.total_seconds() / 3600:g} hours from now "
            "(KPI_NOTIFY_SILENCE_MAX_HOURS)",
        )
    silence_id = str(uuid.uuid4())
    async with session_scope(runtime_of(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        team: str | None = None
        if body.specialist_id is not None:
            team = await queries.specialist_team(conn, body.specialist_id)
        if not principal.is_admin:
            if body.specialist_id is None:
                # The role's limit, not a resource's: organisation-wide silences are admins'.
                raise HTTPException(
                    403, detail="supervisors silence specialists of their own teams only"
                )
            if not principal.can_see_team(team):
                # Unknown, without a team or in another team: one answer (no probing).
                raise not_found("specialist", body.specialist_id)
        row = await repo.insert_silence(
            conn,
            silence_id=silence_id,
            specialist_id=body.specialist_id,
            kpi=body.kpi,
            team_id=team,
            until=body.until,
            comment=body.comment,
            created_by=principal.subject,
            created_at=now,
        )
    return {**row, "applies": True}


@router.get("/silences", response_model=SilenceList)
async def list_silences(
    request: Request,
    active: bool = Query(default=True, description="only silences not yet expired"),
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    svc = service_of(request)
    async with session_scope(runtime_of(request).sessionmaker) as session:
        items = await queries.list_silences(
            await repo.raw_connection(session),
            svc.clock() if active else None,
            None if principal.is_admin else sorted(principal.team_ids),
        )
    return {"items": items}


@router.delete("/silences/{silence_id}", status_code=204)
async def delete_silence(
    silence_id: StorableText, request: Request, principal: Principal = Depends(reader)
) -> Response:
    async with session_scope(runtime_of(request).sessionmaker) as session:
        conn = await repo.raw_connection(session)
        row = await repo.lock_silence(conn, silence_id)
        if row is None:
            raise not_found("silence", silence_id)
        if not principal.can_see_team(row["team_id"]):
            if row["specialist_id"] is None and row["team_id"] is None:
                # The role's limit: organisation-wide silences are listed to every team.
                raise HTTPException(403, detail="organisation-wide silences are deleted by admins")
            raise not_found("silence", silence_id)
        await repo.delete_silence(conn, silence_id)
    return Response(status_code=204)
