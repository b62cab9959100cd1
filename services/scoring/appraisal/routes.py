"""Quarterly appraisal routes: appraisals, exports, finalisation and its preview, the cycle view."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse

from services.scoring import queries
from services.scoring.api.deps import Reader, Viewer
from services.scoring.api.errors import ERRORS, not_found
from services.scoring.api.params import SpecialistId
from services.scoring.api.render import json_response
from services.scoring.api.scope import (
    check_own_id,
    check_specialist_visible,
    listing_teams,
    team_exists,
    visible_teams,
)
from services.scoring.appraisal import cycle_repository as cycle_repo
from services.scoring.appraisal import exports
from services.scoring.appraisal import repository as repo
from services.scoring.appraisal.appraiser import Appr, Appraiser, freeze
from services.scoring.appraisal.cycle import cycle_entry, cycle_summary, finalize_plan
from services.scoring.appraisal.domain import next_quarter, proposed_goals
from services.scoring.appraisal.feedback_routes import feedback_router
from services.scoring.appraisal.inputs import QuarterPath, TeamQuery
from services.scoring.appraisal.plan_routes import plan_router
from services.scoring.appraisal.schemas import (
    Appraisal,
    FinalizePreview,
    FinalizeResult,
    TeamAppraisals,
    TeamCycle,
)
from services.scoring.kpi.windows import parse_window
from shared.auth import Principal
from shared.spreadsheet import attachment

CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def appraisal_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["appraisals"], responses=ERRORS)

    @router.get(
        "/specialists/{specialist_id}/appraisals/{quarter}",
        summary="A specialist's quarterly appraisal (frozen when finalised, live beside it)",
        description="Also the cycle's state: provisional, meeting_status, the decision taken, "
        "the specialist's acknowledgement and comment. A specialist reads their own only.",
        responses={200: {"model": Appraisal}},
    )
    async def specialist_appraisal(
        specialist_id: SpecialistId, quarter: QuarterPath, principal: Viewer, appr: Appr
    ) -> Response:
        q = appr.quarter(quarter)
        check_own_id(principal, specialist_id)
        window = parse_window(q, appr.ctx.today)
        found = await queries.specialist_sums(appr.ctx.db, specialist_id, window.start, window.end)
        if found is None:
            raise not_found("specialist", specialist_id)
        check_specialist_visible(principal, found.specialist)
        (body,) = await appr.appraise(appr.ctx.db, q, [found])
        return json_response(body)

    @router.get(
        "/appraisals/{quarter}",
        summary="A quarter's appraisals of a team (or every visible specialist); JSON, CSV, XLSX",
        responses={200: {"model": TeamAppraisals, "content": {"text/csv": {}, XLSX: {}}}},
    )
    async def team_appraisals(
        quarter: QuarterPath,
        principal: Reader,
        appr: Appr,
        team: TeamQuery = None,
        fmt: Annotated[
            Literal["json", "csv", "xlsx"], Query(alias="format", description="json, csv or xlsx")
        ] = "json",
        lang: Annotated[
            Literal["zh-CN", "en"], Query(description="Language of export headers and grades.")
        ] = "zh-CN",
    ) -> Response:
        q = appr.quarter(quarter)
        teams = await listing_teams(principal, appr.ctx.db, team)
        scope = team or ("all" if teams is None else ",".join(teams))
        if fmt == "csv":
            return StreamingResponse(
                exports.csv_stream(appr.stream(appr.ctx.db, q, teams), lang),
                media_type=CSV,
                headers={"Content-Disposition": _attachment(q, scope, "csv")},
            )
        if fmt == "xlsx":
            meta = {"quarter": q, "teams": scope, "calendar": appr.calendar}
            out = await exports.xlsx_file(appr.stream(appr.ctx.db, q, teams), lang, meta)
            return StreamingResponse(
                exports.file_chunks(out),
                media_type=XLSX,
                headers={"Content-Disposition": _attachment(q, scope, "xlsx")},
            )
        items = [a async for a in appr.stream(appr.ctx.db, q, teams)]
        summary = {g: 0 for g in ("excellent", "qualified", "unqualified", "insufficient_data")}
        for item in items:
            summary[item["overall_grade"]] = summary.get(item["overall_grade"], 0) + 1
        window = parse_window(q, appr.ctx.today)
        return json_response(
            {
                "quarter": q,
                "team": team,
                "window": appr.ctx.window_out(window),
                "calendar": appr.calendar,
                "summary": summary,
                "finalizations": await repo.list_finalizations(appr.ctx.db, q, teams),
                "appraisals": items,
            }
        )

    @router.get(
        "/appraisals/{quarter}/finalize/preview",
        summary="What finalising would freeze now (who, grades, which plans), without writing",
        responses={200: {"model": FinalizePreview}},
    )
    async def finalize_preview(
        quarter: QuarterPath, principal: Reader, appr: Appr, team: TeamQuery = None
    ) -> Response:
        q = appr.quarter(quarter)
        window = parse_window(q, appr.ctx.today)
        teams = await _finalize_teams(principal, appr, team)
        plan_quarter = next_quarter(q)
        freeze_rows: list[dict[str, Any]] = []
        already: list[str] = []
        plans: list[str] = []
        async for chunk in queries.iter_members(appr.ctx.db, teams, window.start, window.end):
            appraised = await appr.appraise(appr.ctx.db, q, chunk, cycle=False)
            planned = await repo.plan_statuses(
                appr.ctx.db, plan_quarter, [a["specialist_id"] for a in appraised]
            )
            plan = finalize_plan(appraised, planned)
            already += plan.already
            plans += plan.plans
            freeze_rows += [
                {
                    "specialist_id": a["specialist_id"],
                    "name": a["name"],
                    "team_id": a["team_id"],
                    "overall_grade": a["overall_grade"],
                    "incentive": a["incentive"]["actions"],
                    "plan_proposed": a["specialist_id"] in plan.plans,
                }
                for a in appraised
                if a["specialist_id"] in plan.freeze
            ]
        reason = _not_over(q, window.end, appr.ctx.today)
        return json_response(
            {
                "quarter": q,
                "team": team,
                "can_finalize": reason is None,
                "reason": reason,
                "plan_quarter": plan_quarter,
                "freeze": freeze_rows,
                "already_finalized": already,
                "plans_proposed": plans,
            }
        )

    @router.post(
        "/appraisals/{quarter}/finalize",
        summary="Freeze a quarter's appraisals (admin, or a supervisor for their teams); "
        "drafts plans for unqualified specialists",
        description="Without `team`: an admin finalises everyone, a supervisor each of their "
        "teams. Only once the quarter is over (409 before).",
        responses={200: {"model": FinalizeResult}},
    )
    async def finalize(
        quarter: QuarterPath, principal: Reader, appr: Appr, team: TeamQuery = None
    ) -> Response:
        q = appr.quarter(quarter)
        window = parse_window(q, appr.ctx.today)
        teams = await _finalize_teams(principal, appr, team)
        reason = _not_over(q, window.end, appr.ctx.today)
        if reason is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=reason)
        plan_quarter = next_quarter(q)
        plan_end = parse_window(plan_quarter, appr.ctx.today).end
        frozen: Counter[str | None] = Counter()
        already = 0
        proposed: set[str] = set()
        async with appr.ctx.db.transaction() as conn:
            async for chunk in queries.iter_members(conn, teams, window.start, window.end):
                appraised = await appr.appraise(conn, q, chunk, cycle=False)
                fresh = [a for a in appraised if not a["finalized"]]
                already += len(appraised) - len(fresh)
                rows = [(a["specialist_id"], a["team_id"], freeze(a)) for a in fresh]
                new = await repo.insert_snapshots(conn, q, rows, principal.subject, appr.now)
                frozen.update(a["team_id"] for a in fresh if a["specialist_id"] in new)
                drafts = [
                    (
                        a["specialist_id"],
                        [g.to_json() for g in proposed_goals(a, appr.ctx.lines, plan_end)],
                    )
                    for a in fresh
                    if a["specialist_id"] in new and a["overall_grade"] == "unqualified"
                ]
                proposed |= await repo.propose_plans(
                    conn, plan_quarter, drafts, f"finalization:{q}", principal.subject
                )
            total = sum(frozen.values())
            # One record per team finalised (an admin without team: the whole organisation).
            scopes: list[str | None] = [None] if teams is None else list(teams)
            for scope in scopes:
                count = total if scope is None else frozen[scope]
                await repo.record_finalization(conn, q, scope, principal.subject, appr.now, count)
        return json_response(
            {
                "quarter": q,
                "team": team,
                "finalized_by": principal.subject,
                "finalized_at": appr.now,
                "frozen": total,
                "already_finalized": already,
                "plan_quarter": plan_quarter,
                "plans_proposed": sorted(proposed),
            }
        )

    @router.get(
        "/appraisals/{quarter}/cycle",
        summary="The team's appraisal cycle: finalised, meeting, plan, decision, acknowledged",
        description="One entry per specialist with the steps still missing; `missing_meeting` "
        "and `missing_decision` list who still has no held meeting or no decision.",
        responses={200: {"model": TeamCycle}},
    )
    async def team_cycle(
        quarter: QuarterPath, principal: Reader, appr: Appr, team: TeamQuery = None
    ) -> Response:
        q = appr.quarter(quarter)
        window = parse_window(q, appr.ctx.today)
        teams = await listing_teams(principal, appr.ctx.db, team)
        plan_quarter = next_quarter(q)
        entries: list[dict[str, Any]] = []
        async for chunk in queries.iter_members(appr.ctx.db, teams, window.start, window.end):
            appraised = await appr.appraise(appr.ctx.db, q, chunk)
            ids = [a["specialist_id"] for a in appraised]
            meetings = await cycle_repo.quarter_meetings(appr.ctx.db, q, ids)
            plans = await repo.plan_statuses(appr.ctx.db, plan_quarter, ids)
            entries += [
                cycle_entry(
                    a,
                    meetings.get(a["specialist_id"], ()),
                    plan_quarter,
                    plans.get(a["specialist_id"]),
                )
                for a in appraised
            ]
        return json_response(
            {
                "quarter": q,
                "team": team,
                "plan_quarter": plan_quarter,
                **cycle_summary(entries),
                "entries": entries,
            }
        )

    router.include_router(feedback_router())
    router.include_router(plan_router())
    return router


async def _finalize_teams(
    principal: Principal, appr: Appraiser, team: str | None
) -> list[str] | None:
    """Teams a finalisation covers: the one named (404 when not the caller's or unknown),
    else everyone for an admin (None) and the supervisor's own teams."""
    teams = visible_teams(principal, team)
    if team is not None and not await team_exists(appr.ctx.db, team):
        raise not_found("team", team)
    if team is None and teams is not None:
        # A token may list teams the directory does not have: nothing of theirs to record.
        teams = [t.id for t in await queries.list_teams(appr.ctx.db, teams)]
    return teams


def _not_over(quarter: str, end: dt.date, today: dt.date) -> str | None:
    if today > end:
        return None
    return (
        f"quarter {quarter} is not over (ends {end}); finalise it from {end + dt.timedelta(days=1)}"
    )


def _attachment(quarter: str, scope: str, ext: str) -> str:
    # The scope is team ids (outside text): attachment() makes any of them a sendable header.
    return attachment(f"appraisal-{quarter}-{scope[:60]}.{ext}")
