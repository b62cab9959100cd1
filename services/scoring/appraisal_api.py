"""Quarterly appraisal routes: appraisals, finalisation, exports, meetings, improvement plans."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.scoring import appraisal_repository as repo
from services.scoring import exports, queries
from services.scoring.app import (
    ERRORS,
    Admin,
    Ctx,
    ReadContext,
    Reader,
    SpecialistId,
    bad_param,
    check_specialist_visible,
    json_response,
    not_found,
    scoring_config,
    team_exists,
    visible_teams,
)
from services.scoring.appraisal import (
    AppraisalRule,
    Goal,
    IncentivePolicy,
    TransitionError,
    build_appraisal,
    check_goal,
    check_transition,
    diff_appraisals,
    goal_progress,
    measurement_window,
    next_quarter,
    overall_grade,
    previous_quarters,
    proposed_goals,
    suggested_status,
)
from services.scoring.kpi.grading import evaluate_all
from services.scoring.kpi.windows import WindowError, parse_quarter, parse_window
from services.scoring.queries import SpecialistSums
from services.scoring.schemas import DirectoryId, KpiKey, LookupId
from shared.auth import Principal
from shared.db import utcnow
from shared.text import TEXT_RULE

# The parts of an appraisal a snapshot freezes (identity and window are shown live).
COMPUTED = ("kpis", "overall_grade", "insufficient_data", "basis", "incentive", "calendar")
QuarterPath = Annotated[str, Path(min_length=6, max_length=7, description="YYYYQn, e.g. 2026Q3")]
TeamQuery = Annotated[LookupId | None, Query(description="Only this team (default: all visible).")]
# Free text kept in PostgreSQL: storable (no NUL, no unpaired surrogate), newlines allowed.
Notes = Annotated[str, StringConstraints(max_length=20000), TEXT_RULE]


# ---------------------------------------------------------------------------
# Configuration and context
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Appraiser:
    """Everything an appraisal needs: read context, rule, incentive policy, calendar name."""

    ctx: ReadContext
    rule: AppraisalRule
    policy: IncentivePolicy
    calendar: str
    now: dt.datetime

    def quarter(self, raw: str) -> str:
        try:
            year, q = parse_quarter(raw)
        except WindowError as exc:
            raise bad_param("path", "quarter", str(exc)) from None
        return f"{year:04d}Q{q}"

    async def appraise(
        self, db: repo.Db, quarter: str, members: Sequence[SpecialistSums]
    ) -> list[dict[str, Any]]:
        """Appraisals of ``members`` (sums over ``quarter``): frozen where finalised, plus live."""
        window = parse_window(quarter, self.ctx.today)
        ids = [m.specialist.id for m in members]
        lookback = max(0, self.policy.promotion_after_consecutive_excellent - 1)
        earlier = previous_quarters(quarter, lookback)
        frozen = await repo.snapshots(db, [quarter, *earlier], ids)
        values = {m.specialist.id: evaluate_all(m.sums, window, self.ctx.lines) for m in members}
        history: dict[str, list[str | None]] = {i: [] for i in ids}
        # Only an excellent streak needs earlier quarters; walk back while it lasts.
        streaking = [
            i
            for i in ids
            if overall_grade({k: v.grade for k, v in values[i].items()}, self.rule).grade
            == "excellent"
        ]
        for before in earlier:
            if not streaking:
                break
            win = parse_window(before, self.ctx.today)
            need = [i for i in streaking if (before, i) not in frozen]
            sums = await repo.sums_for(db, need, win.start, win.end)
            for i in streaking:
                snap = frozen.get((before, i))
                if snap is not None:
                    grade = snap.body.get("overall_grade")
                else:
                    evaluated = evaluate_all(sums[i], win, self.ctx.lines)
                    grade = overall_grade(
                        {k: v.grade for k, v in evaluated.items()}, self.rule
                    ).grade
                history[i].append(grade)
            streaking = [i for i in streaking if history[i][-1] == "excellent"]
        out: list[dict[str, Any]] = []
        for m in members:
            sid = m.specialist.id
            live = build_appraisal(values[sid], self.rule, self.policy, history[sid], self.calendar)
            base = {
                "specialist_id": sid,
                "name": m.specialist.name,
                "team_id": m.specialist.team_id,
                "quarter": quarter,
                "window": self.ctx.window_out(window),
            }
            snap = frozen.get((quarter, sid))
            if snap is None:
                out.append(
                    {
                        **base,
                        **live,
                        "finalized": False,
                        "finalized_by": None,
                        "finalized_at": None,
                        "live": None,
                        "differs": False,
                        "differences": [],
                    }
                )
                continue
            differences = diff_appraisals(snap.body, live)
            out.append(
                {
                    **base,
                    **{k: snap.body.get(k) for k in COMPUTED},
                    "finalized": True,
                    "finalized_by": snap.finalized_by,
                    "finalized_at": snap.finalized_at,
                    "live": live,
                    "differs": bool(differences),
                    "differences": differences,
                }
            )
        return out

    async def stream(
        self, db: repo.Db, quarter: str, teams: Collection[str] | None
    ) -> AsyncIterator[dict[str, Any]]:
        window = parse_window(quarter, self.ctx.today)
        async for chunk in repo.iter_members(db, teams, window.start, window.end):
            for item in await self.appraise(db, quarter, chunk):
                yield item


async def appraiser(request: Request, ctx: Ctx) -> Appraiser:
    config = scoring_config(request)
    clock = getattr(request.app.state, "clock", utcnow)
    return Appraiser(
        ctx, config.appraisal_rule, config.incentives, config.measure.calendar, clock()
    )


Appr = Annotated[Appraiser, Depends(appraiser)]


async def visible_specialist(
    ctx: ReadContext, principal: Principal, sid: str
) -> queries.SpecialistRow:
    specialist = await queries.get_specialist(ctx.db, sid)
    if specialist is None:
        raise not_found("specialist", sid)
    check_specialist_visible(principal, specialist)
    return specialist


async def scoped_teams(
    ctx: ReadContext, principal: Principal, team: str | None
) -> list[str] | None:
    teams = visible_teams(principal, team)
    if team is not None and principal.is_admin and not await team_exists(ctx.db, team):
        raise not_found("team", team)
    return teams


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
# Plans: progress from live KPIs
# ---------------------------------------------------------------------------


async def plans_out(appr: Appraiser, plans: Sequence[repo.PlanRow]) -> list[dict[str, Any]]:
    today = appr.ctx.today
    parsed = [(p, [Goal.from_json(g) for g in p.goals]) for p in plans]
    windows = {
        (p.specialist_id, g): measurement_window(p.quarter, g, today)
        for p, goals in parsed
        for g in goals
    }
    sums = await repo.window_sums(
        appr.ctx.db, {(sid, lo, hi) for (sid, _), (lo, hi) in windows.items()}
    )
    out: list[dict[str, Any]] = []
    for plan, goals in parsed:
        progress = []
        for goal in goals:
            lo, hi = windows[(plan.specialist_id, goal)]
            num, den = sums[(plan.specialist_id, lo, hi)].get(goal.kpi, (0.0, 0))
            line = appr.ctx.lines[goal.kpi]
            progress.append(goal_progress(goal, num, den, line, today, (lo, hi)))
        out.append(
            {
                "specialist_id": plan.specialist_id,
                "quarter": plan.quarter,
                "status": plan.status,
                "goals": [p.to_json() for p in progress],
                "progress": {"suggested_status": suggested_status(progress), "as_of": today},
                "notes": plan.notes,
                "origin": plan.origin,
                "created_by": plan.created_by,
                "created_at": plan.created_at,
                "updated_by": plan.updated_by,
                "updated_at": plan.updated_at,
            }
        )
    return out


# ---------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------


def appraisal_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["appraisals"], responses=ERRORS)

    @router.get(
        "/specialists/{specialist_id}/appraisals/{quarter}",
        summary="A specialist's quarterly appraisal (frozen when finalised, live beside it)",
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
        teams = await scoped_teams(appr.ctx, principal, team)
        scope = team or ("all" if teams is None else ",".join(teams))
        if fmt == "csv":
            return StreamingResponse(
                exports.csv_stream(appr.stream(appr.ctx.db, q, teams), lang),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": _attachment(q, scope, "csv")},
            )
        if fmt == "xlsx":
            meta = {"quarter": q, "teams": scope, "calendar": appr.calendar}
            path = await exports.xlsx_file(appr.stream(appr.ctx.db, q, teams), lang, meta)
            return StreamingResponse(
                exports.file_chunks(path),
                media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
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
            async for chunk in repo.iter_members(conn, teams, window.start, window.end):
                appraised = await appr.appraise(conn, q, chunk)
                fresh = [a for a in appraised if not a["finalized"]]
                already += len(appraised) - len(fresh)
                rows = [(a["specialist_id"], a["team_id"], _freeze(a)) for a in fresh]
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

    @router.get("/specialists/{specialist_id}/meetings", summary="A specialist's feedback meetings")
    async def get_meetings(
        specialist_id: SpecialistId,
        principal: Reader,
        appr: Appr,
        quarter: Annotated[str | None, Query(max_length=7)] = None,
    ) -> Response:
        q = None if quarter is None else _query_quarter(quarter)
        await visible_specialist(appr.ctx, principal, specialist_id)
        meetings = await repo.list_meetings(appr.ctx.db, specialist_id, q)
        return json_response({"specialist_id": specialist_id, "meetings": meetings})

    @router.post(
        "/specialists/{specialist_id}/meetings",
        status_code=201,
        summary="Record a feedback meeting",
    )
    async def post_meeting(
        specialist_id: SpecialistId, body: MeetingIn, principal: Reader, appr: Appr
    ) -> Response:
        q = None if body.quarter is None else _body_quarter(body.quarter, "quarter")
        await visible_specialist(appr.ctx, principal, specialist_id)
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
    )
    async def get_plan(
        specialist_id: SpecialistId, quarter: QuarterPath, principal: Reader, appr: Appr
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(appr.ctx, principal, specialist_id)
        plan = await repo.get_plan(appr.ctx.db, specialist_id, q)
        if plan is None:
            raise HTTPException(404, detail=f"no improvement plan for {specialist_id!r} in {q}")
        (out,) = await plans_out(appr, [plan])
        return json_response(out)

    @router.put(
        "/specialists/{specialist_id}/plans/{quarter}",
        summary="Create or replace an improvement plan's goals and notes (status optional)",
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
        await visible_specialist(appr.ctx, principal, specialist_id)
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
    )
    async def post_plan_status(
        specialist_id: SpecialistId,
        quarter: QuarterPath,
        principal: Reader,
        appr: Appr,
        body: Annotated[StatusIn, Body()],
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(appr.ctx, principal, specialist_id)
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

    @router.get("/plans", summary="Improvement plans of visible teams, with progress")
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
        teams = await scoped_teams(appr.ctx, principal, team)
        plans = await repo.list_plans(appr.ctx.db, q, teams, plan_status)
        return json_response({"plans": await plans_out(appr, plans)})

    return router


def _freeze(appraised: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: appraised[k]
        for k in ("specialist_id", "name", "team_id", "quarter", "window", *COMPUTED)
    }


def _attachment(quarter: str, scope: str, ext: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in scope)[:60]
    return f'attachment; filename="appraisal-{quarter}-{safe}.{ext}"'


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
