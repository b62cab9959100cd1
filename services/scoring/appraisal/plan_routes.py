"""Improvement-plan routes: goals and status (supervisors), progress notes (also the specialist)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from services.scoring.access import Action
from services.scoring.api.deps import Reader, Viewer
from services.scoring.api.errors import ERRORS, bad_param
from services.scoring.api.params import SpecialistId
from services.scoring.api.render import json_response
from services.scoring.api.scope import listing_teams, visible_specialist
from services.scoring.appraisal import cycle_repository as cycle_repo
from services.scoring.appraisal import repository as repo
from services.scoring.appraisal.appraiser import Appr, plans_out
from services.scoring.appraisal.domain import Goal, TransitionError, check_goal, check_transition
from services.scoring.appraisal.inputs import (
    NoteAdder,
    PlanEditor,
    PlanIn,
    PlanStatusIn,
    QuarterPath,
    StatusIn,
    TeamQuery,
    TextIn,
    conflict,
    query_quarter,
)
from services.scoring.appraisal.schemas import Plan, PlanList, ProgressNote


def _no_plan(specialist_id: str, quarter: str) -> HTTPException:
    return HTTPException(404, detail=f"no improvement plan for {specialist_id!r} in {quarter}")


def _transition(old: str, new: str) -> None:
    try:
        check_transition(old, new)
    except TransitionError as exc:
        raise conflict(exc) from None


def plan_router() -> APIRouter:
    router = APIRouter(tags=["appraisals"], responses=ERRORS)

    @router.get(
        "/specialists/{specialist_id}/plans/{quarter}",
        summary="A specialist's improvement plan with progress from live KPIs and its notes",
        responses={200: {"model": Plan}},
    )
    async def get_plan(
        specialist_id: SpecialistId, quarter: QuarterPath, principal: Viewer, appr: Appr
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        plan = await repo.get_plan(appr.ctx.db, specialist_id, q)
        if plan is None:
            raise _no_plan(specialist_id, q)
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
        principal: PlanEditor,
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
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.EDIT_PLAN)
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
        body: StatusIn,
        principal: PlanEditor,
        appr: Appr,
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.EDIT_PLAN)
        async with appr.ctx.db.transaction() as conn:
            current = await repo.get_plan(conn, specialist_id, q, for_update=True)
            if current is None:
                raise _no_plan(specialist_id, q)
            _transition(current.status, body.status)
            plan = await repo.set_plan_status(
                conn, specialist_id, q, body.status, principal.subject
            )
        (out,) = await plans_out(appr, [plan])
        return json_response(out)

    @router.post(
        "/specialists/{specialist_id}/plans/{quarter}/notes",
        status_code=201,
        summary="Add a timestamped entry to a plan's progress log (the specialist on their own "
        "plan, the team's supervisor, admin); entries are never edited",
        responses={201: {"model": ProgressNote}},
    )
    async def post_progress_note(
        specialist_id: SpecialistId,
        quarter: QuarterPath,
        body: TextIn,
        principal: NoteAdder,
        appr: Appr,
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.ADD_PROGRESS_NOTE)
        async with appr.ctx.db.transaction() as conn:
            if await repo.get_plan(conn, specialist_id, q, for_update=True) is None:
                raise _no_plan(specialist_id, q)
            note = await cycle_repo.add_progress_note(
                conn, specialist_id, q, body.text, principal.subject, principal.role.value, appr.now
            )
        response = json_response(note)
        response.status_code = 201
        return response

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
        plan_status: Annotated[PlanStatusIn | None, Query(alias="status")] = None,
    ) -> Response:
        q = None if quarter is None else query_quarter(quarter)
        teams = await listing_teams(principal, appr.ctx.db, team)
        plans = await repo.list_plans(appr.ctx.db, q, teams, plan_status)
        return json_response({"plans": await plans_out(appr, plans)})

    return router
