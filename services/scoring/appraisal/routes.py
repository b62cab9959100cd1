"""Quarterly appraisal routes: appraisals, finalisation, exports, meetings, improvement plans."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.scoring import queries
from services.scoring.api.deps import Admin, Reader
from services.scoring.api.errors import ERRORS, bad_param, not_found
from services.scoring.api.params import SpecialistId
from services.scoring.api.render import json_response
from services.scoring.api.schemas import DirectoryId, KpiKey, LookupId
from services.scoring.api.scope import (
    check_specialist_visible,
    listing_teams,
    team_exists,
    visible_specialist,
)
from services.scoring.appraisal import exports
from services.scoring.appraisal import repository as repo
from services.scoring.appraisal.appraiser import Appr, freeze, plans_out
from services.scoring.appraisal.domain import (
    Goal,
    TransitionError,
    check_goal,
    check_transition,
    next_quarter,
    proposed_goals,
)
from services.scoring.appraisal.schemas import (
    Appraisal,
    FinalizeResult,
    Meeting,
    MeetingList,
    Plan,
    PlanList,
    TeamAppraisals,
)
from services.scoring.kpi.windows import WindowError, parse_quarter, parse_window
from shared.spreadsheet import attachment
from shared.text import TEXT_RULE

QuarterPath = Annotated[str, Path(min_length=6, max_length=7, description="YYYYQn, e.g. 2026Q3")]
TeamQuery = Annotated[LookupId | None, Query(description="Only this team (default: all visible).")]
# Free text kept in PostgreSQL: storable (no NUL, no unpaired surrogate), newlines allowed.
Notes = Annotated[str, StringConstraints(max_length=20000), TEXT_RULE]
CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeetingIn(_In):
    date: dt.date = Field(description="Local date of the meeting.")
    participants: list[DirectoryId] = Field(min_length=1, max_length=50)
    notes: Notes = ""
    quarter: str | None = Field(default=None, description="Appraisal quarter discussed (YYYYQn).")


class GoalIn(_In):
    kpi: KpiKey
    target: float
    due: dt.date
    baseline: float | None = None


class PlanIn(_In):
    goals: list[GoalIn] = Field(default_factory=list, max_length=20)
    notes: Notes = ""
    status: Literal["draft", "open", "on_track", "achieved", "missed"] | None = None


class StatusIn(_In):
    status: Literal["draft", "open", "on_track", "achieved", "missed"]


# ---------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------


def appraisal_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["appraisals"], responses=ERRORS)

    @router.get(
        "/specialists/{specialist_id}/appraisals/{quarter}",
        summary="A specialist's quarterly appraisal (frozen when finalised, live beside it)",
        responses={200: {"model": Appraisal}},
    )
    async def specialist_appraisal(
        specialist_id: SpecialistId, quarter: QuarterPath, principal: Reader, appr: Appr
    ) -> Response:
        q = appr.quarter(quarter)
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

    @router.post(
        "/appraisals/{quarter}/finalize",
        summary="Freeze a quarter's appraisals (admin); drafts plans for unqualified specialists",
        responses={200: {"model": FinalizeResult}},
    )
    async def finalize(
        quarter: QuarterPath, principal: Admin, appr: Appr, team: TeamQuery = None
    ) -> Response:
        q = appr.quarter(quarter)
        window = parse_window(q, appr.ctx.today)
        if appr.ctx.today <= window.end:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"quarter {q} is not over (ends {window.end}); "
                f"finalise it from {window.end + dt.timedelta(days=1)}",
            )
        if team is not None and not await team_exists(appr.ctx.db, team):
            raise not_found("team", team)
        teams = None if team is None else [team]
        plan_quarter = next_quarter(q)
        plan_end = parse_window(plan_quarter, appr.ctx.today).end
        frozen: set[str] = set()
        already = 0
        proposed: set[str] = set()
        async with appr.ctx.db.transaction() as conn:
            async for chunk in queries.iter_members(conn, teams, window.start, window.end):
                appraised = await appr.appraise(conn, q, chunk)
                fresh = [a for a in appraised if not a["finalized"]]
                already += len(appraised) - len(fresh)
                rows = [(a["specialist_id"], a["team_id"], freeze(a)) for a in fresh]
                new = await repo.insert_snapshots(conn, q, rows, principal.subject, appr.now)
                frozen |= new
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
            await repo.record_finalization(conn, q, team, principal.subject, appr.now, len(frozen))
        return json_response(
            {
                "quarter": q,
                "team": team,
                "finalized_by": principal.subject,
                "finalized_at": appr.now,
                "frozen": len(frozen),
                "already_finalized": already,
                "plan_quarter": plan_quarter,
                "plans_proposed": sorted(proposed),
            }
        )

    # -- feedback meetings ------------------------------------------------------------

    @router.get(
        "/specialists/{specialist_id}/meetings",
        summary="A specialist's feedback meetings",
        responses={200: {"model": MeetingList}},
    )
    async def get_meetings(
        specialist_id: SpecialistId,
        principal: Reader,
        appr: Appr,
        quarter: Annotated[str | None, Query(max_length=7)] = None,
    ) -> Response:
        q = None if quarter is None else _query_quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        meetings = await repo.list_meetings(appr.ctx.db, specialist_id, q)
        return json_response({"specialist_id": specialist_id, "meetings": meetings})

    @router.post(
        "/specialists/{specialist_id}/meetings",
        status_code=201,
        summary="Record a feedback meeting",
        responses={201: {"model": Meeting}},
    )
    async def post_meeting(
        specialist_id: SpecialistId, body: MeetingIn, principal: Reader, appr: Appr
    ) -> Response:
        q = None if body.quarter is None else _body_quarter(body.quarter, "quarter")
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        async with appr.ctx.db.transaction() as conn:
            meeting = await repo.insert_meeting(
                conn, specialist_id, q, body.date, body.participants, body.notes, principal.subject
            )
        response = json_response(meeting)
        response.status_code = 201
        return response

    # -- improvement plans ------------------------------------------------------------

    @router.get(
        "/specialists/{specialist_id}/plans/{quarter}",
        summary="A specialist's improvement plan with progress from live KPIs",
        responses={200: {"model": Plan}},
    )
    async def get_plan(
        specialist_id: SpecialistId, quarter: QuarterPath, principal: Reader, appr: Appr
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        plan = await repo.get_plan(appr.ctx.db, specialist_id, q)
        if plan is None:
            raise HTTPException(404, detail=f"no improvement plan for {specialist_id!r} in {q}")
        (out,) = await plans_out(appr, [plan])
        return json_response(out)

    @router.put(
        "/specialists/{specialist_id}/plans/{quarter}",
        summary="Create or replace an improvement plan's goals and notes (status optional)",
        responses={200: {"model": Plan}},
    )
    async def put_plan(
        specialist_id: SpecialistId,
        quarter: QuarterPath,
        body: PlanIn,
        principal: Reader,
        appr: Appr,
    ) -> Response:
        q = appr.quarter(quarter)
        goals = []
        for i, raw in enumerate(body.goals):
            goal = Goal(raw.kpi.value, raw.target, raw.due, raw.baseline)
            try:
                check_goal(goal, f"goals[{i}]")
            except ValueError as exc:
                raise bad_param("body", f"goals[{i}]", str(exc)) from None
            goals.append(goal)
        if len({g.kpi for g in goals}) != len(goals):
            raise bad_param("body", "goals", "at most one goal per KPI")
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        async with appr.ctx.db.transaction() as conn:
            current = await repo.get_plan(conn, specialist_id, q, for_update=True)
            new_status = body.status or (current.status if current else "open")
            if current is not None:
                _transition(current.status, new_status)
            plan = await repo.upsert_plan(
                conn,
                specialist_id,
                q,
                new_status,
                [g.to_json() for g in goals],
                body.notes,
                "manual",
                principal.subject,
            )
        (out,) = await plans_out(appr, [plan])
        return json_response(out)

    @router.post(
        "/specialists/{specialist_id}/plans/{quarter}/status",
        summary="Move a plan through its lifecycle (draft → open → on_track → achieved/missed)",
        responses={200: {"model": Plan}},
    )
    async def post_plan_status(
        specialist_id: SpecialistId,
        quarter: QuarterPath,
        principal: Reader,
        appr: Appr,
        body: Annotated[StatusIn, Body()],
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        async with appr.ctx.db.transaction() as conn:
            current = await repo.get_plan(conn, specialist_id, q, for_update=True)
            if current is None:
                raise HTTPException(404, detail=f"no improvement plan for {specialist_id!r} in {q}")
            _transition(current.status, body.status)
            plan = await repo.set_plan_status(
                conn, specialist_id, q, body.status, principal.subject
            )
        (out,) = await plans_out(appr, [plan])
        return json_response(out)

    @router.get(
        "/plans",
        summary="Improvement plans of visible teams, with progress",
        responses={200: {"model": PlanList}},
    )
    async def list_plans(
        principal: Reader,
        appr: Appr,
        quarter: Annotated[str | None, Query(max_length=7)] = None,
        team: TeamQuery = None,
        plan_status: Annotated[
            Literal["draft", "open", "on_track", "achieved", "missed"] | None,
            Query(alias="status"),
        ] = None,
    ) -> Response:
        q = None if quarter is None else _query_quarter(quarter)
        teams = await listing_teams(principal, appr.ctx.db, team)
        plans = await repo.list_plans(appr.ctx.db, q, teams, plan_status)
        return json_response({"plans": await plans_out(appr, plans)})

    return router


def _attachment(quarter: str, scope: str, ext: str) -> str:
    # The scope is team ids (outside text): attachment() makes any of them a sendable header.
    return attachment(f"appraisal-{quarter}-{scope[:60]}.{ext}")


def _canonical(raw: str) -> str:
    year, q = parse_quarter(raw)
    return f"{year:04d}Q{q}"


def _query_quarter(raw: str) -> str:
    try:
        return _canonical(raw)
    except WindowError as exc:
        raise bad_param("query", "quarter", str(exc)) from None


def _body_quarter(raw: str, name: str) -> str:
    try:
        return _canonical(raw)
    except WindowError as exc:
        raise bad_param("body", name, str(exc)) from None


def _transition(old: str, new: str) -> None:
    try:
        check_transition(old, new)
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
