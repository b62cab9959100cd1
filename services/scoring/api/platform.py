"""Platform-health routes for the dashboard: pipeline status, incident history, dismissal."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from services.scoring.api.deps import Admin, Pool, Reader
from services.scoring.api.errors import ERRORS
from services.scoring.api.render import json_response
from services.scoring.api.schemas import IncidentList, IncidentOut, PlatformHealth
from shared import health
from shared.auth import Principal

IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def incident_out(incident: health.Incident, principal: Principal) -> dict[str, Any]:
    """`Incident.to_dict()` plus `condition` (resolves by itself, so not dismissible).

    Supervisors get no `detail`: it names topics, partitions, offsets and record keys, which
    is for the operators who act on it; the summary tells them the numbers may be stale.
    """
    out = incident.to_dict()
    out["condition"] = incident.condition
    if not principal.is_admin:
        del out["detail"]
    return out


def platform_router() -> APIRouter:
    router = APIRouter(prefix="/v1/platform", tags=["platform health"], responses=ERRORS)

    @router.get(
        "/health",
        summary="Is the KPI pipeline moving? Open platform incidents, newest first",
        description="`status` is `stalled` while a `stall` incident is open, `degraded` while "
        "any other incident is open, else `ok`. Supervisors get the incidents without `detail`.",
        responses={200: {"model": PlatformHealth}},
    )
    async def platform_health(principal: Reader, db: Pool) -> Response:
        async with db.transaction() as conn:
            incidents = await health.list_incidents(conn, status=health.OPEN, limit=1000)
        return json_response(
            {
                "status": health.pipeline_status(incidents),
                "incidents": [incident_out(i, principal) for i in incidents],
            }
        )

    @router.get(
        "/incidents",
        summary="Incident history (admin), newest first",
        responses={200: {"model": IncidentList}},
    )
    async def incidents(
        principal: Admin,
        db: Pool,
        state: Annotated[Literal["open", "resolved"] | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        async with db.transaction() as conn:
            found = await health.list_incidents(conn, status=state, limit=limit)
        return json_response({"incidents": [incident_out(i, principal) for i in found]})

    @router.post(
        "/incidents/{incident_id}/dismiss",
        summary="Close an open event incident (admin)",
        description="404 for an unknown id; 409 when it is not open, or for a condition "
        "(`stall`), which resolves by itself when it clears.",
        responses={200: {"model": IncidentOut}},
    )
    async def dismiss(incident_id: IncidentId, principal: Admin, db: Pool) -> Response:
        async with db.transaction() as conn:
            found = await health.get_incident(conn, incident_id)
            if found is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown incident {incident_id}")
            if found.condition and found.status == health.OPEN:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"incident {incident_id} ({found.kind}) resolves by itself when it clears",
                )
            dismissed = await health.dismiss_incident(conn, incident_id, by=principal.subject)
            if dismissed is None:
                raise HTTPException(status.HTTP_409_CONFLICT, f"incident {incident_id} is not open")
        return json_response(incident_out(dismissed, principal))

    return router
