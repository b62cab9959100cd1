"""Team digest routes: preview a team's digest of a period, and send one now (admins)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.scoring.api.deps import Admin, Ctx, Reader, now
from services.scoring.api.errors import ERRORS, bad_param, or_404
from services.scoring.api.params import TeamId
from services.scoring.api.render import json_response
from services.scoring.api.scope import check_team_visible
from services.scoring.digests.periods import (
    DigestSchedule,
    Period,
    PeriodError,
    last_finished,
    parse_period,
)
from services.scoring.digests.scan import team_digest
from shared import digests as store
from shared.webhooks import DigestContent

PeriodParam = Annotated[
    str | None,
    Query(
        max_length=16,
        description="YYYY-Www (ISO week, e.g. 2026-W49) or YYYY-MM; default: the latest "
        "finished period of KPI_DIGEST_SCHEDULE (weeks when it is off).",
    ),
]


class DigestRecord(BaseModel):
    """A digest recorded for notify: when, by whom (null: the schedule), when relayed."""

    model_config = ConfigDict(extra="forbid")

    digest_id: int
    team_id: str
    period: str
    created_at: AwareDatetime
    relayed_at: AwareDatetime | None
    requested_by: str | None


class DigestPreview(BaseModel):
    """A team's digest of a period as it reads now, and its record if it was sent."""

    model_config = ConfigDict(extra="forbid")

    digest: DigestContent
    sent: DigestRecord | None


class DigestSent(DigestRecord):
    """The answer of a send: `recorded` false when the period's digest was recorded before;
    it then goes only to the team's channels that never had it (none twice)."""

    recorded: bool


def _schedule(request: Request) -> DigestSchedule:
    schedule: DigestSchedule = getattr(request.app.state, "digest_schedule", DigestSchedule())
    return schedule


def _period(request: Request, text: str | None, today: dt.date, *, finished: bool) -> Period:
    if text is None:
        return last_finished(_schedule(request).period_kind, today)
    try:
        period = parse_period(text)
    except PeriodError as exc:
        raise bad_param("query", "period", str(exc)) from None
    if finished and period.end >= today:
        raise bad_param("query", "period", f"{period.name} has not ended yet (today is {today})")
    if period.start > today:
        raise bad_param("query", "period", f"{period.name} has not begun yet (today is {today})")
    return period


def _record_out(digest: store.Digest) -> dict[str, object]:
    return {
        "digest_id": digest.id,
        "team_id": digest.team_id,
        "period": digest.period,
        "created_at": digest.created_at,
        "relayed_at": digest.relayed_at,
        "requested_by": digest.requested_by,
    }


def digest_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["digests"], responses=ERRORS)

    @router.get(
        "/teams/{team_id}/digest",
        summary="Preview a team's digest of a period (nothing is sent)",
        responses={200: {"model": DigestPreview}},
    )
    async def preview_digest(
        team_id: TeamId, principal: Reader, ctx: Ctx, request: Request, period: PeriodParam = None
    ) -> Response:
        check_team_visible(principal, team_id)
        p = _period(request, period, ctx.today, finished=False)
        content = or_404(
            await team_digest(ctx.db, team_id, p, ctx.tz.key, ctx.lines), "team", team_id
        )
        recorded = await store.get_digest(ctx.db, team_id, p.name)
        return json_response(
            {
                "digest": content.model_dump(mode="json"),
                "sent": None if recorded is None else _record_out(recorded),
            }
        )

    @router.post(
        "/teams/{team_id}/digest/send",
        summary="Send a team's digest of a finished period now (once per period and channel)",
        responses={200: {"model": DigestSent}},
    )
    async def send_digest(
        team_id: TeamId, principal: Admin, ctx: Ctx, request: Request, period: PeriodParam = None
    ) -> Response:
        p = _period(request, period, ctx.today, finished=True)
        async with ctx.db.transaction() as conn:
            content = or_404(
                await team_digest(conn, team_id, p, ctx.tz.key, ctx.lines), "team", team_id
            )
            digest = await store.record_digest(conn, content, now(request), principal.subject)
            recorded = digest is not None
            if digest is None:
                digest = await store.get_digest(conn, team_id, p.name)
                assert digest is not None  # the insert conflicted with it
                await store.relay_again(conn, digest.id)
        return json_response({**_record_out(digest), "recorded": recorded})

    return router
