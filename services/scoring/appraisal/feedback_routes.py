"""Feedback routes of the cycle: meetings, the specialist's acknowledgement and comment,
incentive decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.scoring.access import Action
from services.scoring.api.deps import Viewer
from services.scoring.api.errors import ERRORS, not_found, or_404
from services.scoring.api.params import SpecialistId
from services.scoring.api.render import json_response
from services.scoring.api.scope import visible_specialist
from services.scoring.appraisal import cycle_repository as cycle_repo
from services.scoring.appraisal import repository as repo
from services.scoring.appraisal.appraiser import Appr, Appraiser
from services.scoring.appraisal.cycle import (
    HELD,
    CycleConflict,
    FieldError,
    MeetingRecord,
    acknowledgement_stands,
    action_labels,
    check_decision,
    check_finalized,
    check_meeting_acknowledgeable,
    check_meeting_change,
    decision_out,
    decision_types,
    patched,
)
from services.scoring.appraisal.inputs import (
    Acknowledger,
    Commenter,
    Decider,
    DecisionIn,
    MeetingId,
    MeetingIn,
    MeetingPatch,
    MeetingRecorder,
    QuarterPath,
    TextIn,
    body_quarter,
    conflict,
    field_error,
    query_quarter,
)
from services.scoring.appraisal.schemas import (
    Acknowledgement,
    CommentOut,
    Decision,
    DecisionHistory,
    Meeting,
    MeetingList,
)
from services.scoring.db import Db
from shared.auth import Principal


def _record(body: MeetingIn) -> MeetingRecord:
    """The meeting a POST or PUT body describes (``date`` is held_on's older name)."""
    held_on = body.held_on
    if body.date is not None:
        if body.status != HELD:
            raise field_error(
                FieldError("date", "is the day a meeting was held; schedule with scheduled_for")
            )
        if held_on is not None and held_on != body.date:
            raise field_error(FieldError("date", "differs from held_on; send one of them"))
        held_on = body.date
    return MeetingRecord(
        status=body.status,
        quarter=None if body.quarter is None else body_quarter(body.quarter),
        scheduled_for=body.scheduled_for,
        held_on=held_on,
        participants=tuple(body.participants),
        notes=body.notes,
        agreed_actions=tuple(body.agreed_actions),
    )


def _checked(old: MeetingRecord | None, new: MeetingRecord) -> MeetingRecord:
    try:
        check_meeting_change(old, new)
    except FieldError as exc:
        raise field_error(exc) from None
    except CycleConflict as exc:
        raise conflict(exc) from None
    return new


async def _require_finalized(db: Db, quarter: str, specialist_id: str, what: str) -> None:
    """409 naming ``what`` unless the specialist's appraisal of ``quarter`` is frozen."""
    frozen = bool(await repo.snapshots(db, [quarter], [specialist_id]))
    try:
        check_finalized(frozen, what)
    except CycleConflict as exc:
        raise conflict(exc) from None


def _created(body: Any) -> Response:
    response = json_response(body)
    response.status_code = 201
    return response


def feedback_router() -> APIRouter:
    router = APIRouter(tags=["appraisals"], responses=ERRORS)

    # -- feedback meetings ------------------------------------------------------------

    @router.get(
        "/specialists/{specialist_id}/meetings",
        summary="A specialist's feedback meetings (a specialist: their own)",
        responses={200: {"model": MeetingList}},
    )
    async def get_meetings(
        specialist_id: SpecialistId,
        principal: Viewer,
        appr: Appr,
        quarter: Annotated[str | None, Query(max_length=7)] = None,
    ) -> Response:
        q = None if quarter is None else query_quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        meetings = await cycle_repo.list_meetings(appr.ctx.db, specialist_id, q)
        return json_response(
            {"specialist_id": specialist_id, "meetings": [m.to_json() for m in meetings]}
        )

    @router.post(
        "/specialists/{specialist_id}/meetings",
        status_code=201,
        summary="Schedule a feedback meeting, or record one held (team's supervisor or admin)",
        responses={201: {"model": Meeting}},
    )
    async def post_meeting(
        specialist_id: SpecialistId, body: MeetingIn, principal: MeetingRecorder, appr: Appr
    ) -> Response:
        record = _checked(None, _record(body))
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.RECORD_MEETING)
        met_on = record.day(appr.ctx.tz) or appr.ctx.today
        async with appr.ctx.db.transaction() as conn:
            row = await cycle_repo.insert_meeting(
                conn, specialist_id, record, met_on, principal.subject
            )
        return _created(row.to_json())

    async def update(
        appr: Appraiser,
        principal: Principal,
        specialist_id: str,
        meeting_id: int,
        change: Callable[[MeetingRecord], MeetingRecord],
    ) -> Response:
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.RECORD_MEETING)
        async with appr.ctx.db.transaction() as conn:
            current = or_404(
                await cycle_repo.get_meeting(conn, specialist_id, meeting_id, for_update=True),
                "meeting",
                str(meeting_id),
            )
            new = _checked(current.record, change(current.record))
            row = await cycle_repo.update_meeting(
                conn,
                meeting_id,
                new,
                new.day(appr.ctx.tz) or current.met_on,
                principal.subject,
                appr.now,
                acknowledgement_stands(current.record, new),
            )
        return json_response(row.to_json())

    @router.put(
        "/specialists/{specialist_id}/meetings/{meeting_id}",
        summary="Replace a meeting's fields (scheduled → held or cancelled; cancelled → scheduled)",
        description="A change to a held record's date, participants, notes or agreed actions "
        "withdraws the specialist's acknowledgement of it.",
        responses={200: {"model": Meeting}, 409: {"description": "Not an allowed transition."}},
    )
    async def put_meeting(
        specialist_id: SpecialistId,
        meeting_id: MeetingId,
        body: MeetingIn,
        principal: MeetingRecorder,
        appr: Appr,
    ) -> Response:
        record = _record(body)
        return await update(appr, principal, specialist_id, meeting_id, lambda _: record)

    @router.patch(
        "/specialists/{specialist_id}/meetings/{meeting_id}",
        summary="Change some of a meeting's fields (only those sent)",
        responses={200: {"model": Meeting}, 409: {"description": "Not an allowed transition."}},
    )
    async def patch_meeting(
        specialist_id: SpecialistId,
        meeting_id: MeetingId,
        body: MeetingPatch,
        principal: MeetingRecorder,
        appr: Appr,
    ) -> Response:
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        if changes.get("quarter") is not None:
            changes["quarter"] = body_quarter(changes["quarter"])
        return await update(
            appr, principal, specialist_id, meeting_id, lambda old: patched(old, changes)
        )

    @router.post(
        "/specialists/{specialist_id}/meetings/{meeting_id}/acknowledge",
        summary="The specialist acknowledges a held meeting's record (their own only)",
        responses={200: {"model": Meeting}, 409: {"description": "The meeting is not held."}},
    )
    async def acknowledge_meeting(
        specialist_id: SpecialistId, meeting_id: MeetingId, principal: Acknowledger, appr: Appr
    ) -> Response:
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.ACKNOWLEDGE)
        async with appr.ctx.db.transaction() as conn:
            current = or_404(
                await cycle_repo.get_meeting(conn, specialist_id, meeting_id, for_update=True),
                "meeting",
                str(meeting_id),
            )
            try:
                check_meeting_acknowledgeable(current.record.status)
            except CycleConflict as exc:
                raise conflict(exc) from None
            row = await cycle_repo.acknowledge_meeting(conn, meeting_id, appr.now)
        return json_response(row.to_json())

    # -- the specialist's acknowledgement and comment ------------------------------------

    @router.post(
        "/specialists/{specialist_id}/appraisals/{quarter}/acknowledge",
        summary="The specialist acknowledges their finalised appraisal (once; repeats keep it)",
        responses={
            200: {"model": Acknowledgement},
            409: {"description": "Not finalised for this specialist yet."},
        },
    )
    async def acknowledge_appraisal(
        specialist_id: SpecialistId, quarter: QuarterPath, principal: Acknowledger, appr: Appr
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.ACKNOWLEDGE)
        async with appr.ctx.db.transaction() as conn:
            await _require_finalized(conn, q, specialist_id, "an appraisal is acknowledged")
            response = await cycle_repo.acknowledge_appraisal(conn, q, specialist_id, appr.now)
        return json_response(
            {
                "specialist_id": specialist_id,
                "quarter": q,
                "acknowledged_at": response.acknowledged_at,
            }
        )

    @router.put(
        "/specialists/{specialist_id}/appraisals/{quarter}/comment",
        summary="The specialist's one comment on their finalised appraisal (replaced on each PUT)",
        responses={
            200: {"model": CommentOut},
            409: {"description": "Not finalised for this specialist yet."},
        },
    )
    async def put_comment(
        specialist_id: SpecialistId,
        quarter: QuarterPath,
        body: TextIn,
        principal: Commenter,
        appr: Appr,
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.COMMENT)
        async with appr.ctx.db.transaction() as conn:
            await _require_finalized(conn, q, specialist_id, "an appraisal is commented on")
            response = await cycle_repo.set_comment(conn, q, specialist_id, body.text, appr.now)
        return json_response(
            {"specialist_id": specialist_id, "quarter": q, "comment": response.comment_json()}
        )

    # -- incentive decisions ------------------------------------------------------------

    @router.put(
        "/specialists/{specialist_id}/appraisals/{quarter}/decision",
        summary="Record the incentive decision taken (team's supervisor or admin); kept in history",
        responses={
            200: {"model": Decision},
            409: {"description": "Not finalised for this specialist yet."},
        },
    )
    async def put_decision(
        specialist_id: SpecialistId,
        quarter: QuarterPath,
        body: DecisionIn,
        principal: Decider,
        appr: Appr,
    ) -> Response:
        q = appr.quarter(quarter)
        try:
            check_decision(body.type, body.amount, appr.policy)
        except FieldError as exc:
            raise field_error(exc) from None
        await visible_specialist(principal, appr.ctx.db, specialist_id, Action.RECORD_DECISION)
        async with appr.ctx.db.transaction() as conn:
            await _require_finalized(conn, q, specialist_id, "a decision is recorded")
            decision = await cycle_repo.insert_decision(
                conn,
                q,
                specialist_id,
                body.type,
                body.amount,
                body.level,
                body.note,
                principal.subject,
                appr.now,
            )
        return json_response(decision_out(decision))

    @router.get(
        "/specialists/{specialist_id}/appraisals/{quarter}/decisions",
        summary="The suggested incentive, the current decision and every decision recorded",
        responses={200: {"model": DecisionHistory}},
    )
    async def get_decisions(
        specialist_id: SpecialistId, quarter: QuarterPath, principal: Viewer, appr: Appr
    ) -> Response:
        q = appr.quarter(quarter)
        await visible_specialist(principal, appr.ctx.db, specialist_id)
        appraisal = await appr.of(specialist_id, q)
        if appraisal is None:  # removed from the directory since the check above
            raise not_found("specialist", specialist_id)
        history = [
            decision_out(d)
            for d in await cycle_repo.decision_history(appr.ctx.db, q, specialist_id)
        ]
        return json_response(
            {
                "specialist_id": specialist_id,
                "quarter": q,
                "suggested": appraisal["incentive"]["actions"],
                "current": history[0] if history else None,
                "history": history,
                "types": [
                    {"code": c, "labels": action_labels(c)} for c in decision_types(appr.policy)
                ],
            }
        )

    return router
