"""What the appraisal routes take: request bodies, path and query parameters, the caller."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, TypeAlias

from fastapi import Depends, HTTPException, Path, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.scoring.access import Action
from services.scoring.api.errors import bad_param
from services.scoring.api.schemas import DirectoryId, KpiKey, LookupId
from services.scoring.api.scope import check_action
from services.scoring.appraisal.cycle import CycleConflict, FieldError
from services.scoring.kpi.windows import WindowError, parse_quarter
from shared.auth import Principal, Role, require
from shared.text import TEXT_RULE

QuarterPath = Annotated[str, Path(min_length=6, max_length=7, description="YYYYQn, e.g. 2026Q3")]
TeamQuery = Annotated[LookupId | None, Query(description="Only this team (default: all visible).")]
MeetingId = Annotated[int, Path(ge=1, le=2**63 - 1)]
# Free text kept in PostgreSQL: storable (no NUL, no unpaired surrogate), newlines allowed.
Notes = Annotated[str, StringConstraints(max_length=20000), TEXT_RULE]
Text = Annotated[str, StringConstraints(min_length=1, max_length=20000), TEXT_RULE]
ActionText = Annotated[str, StringConstraints(min_length=1, max_length=2000), TEXT_RULE]
PlanStatusIn: TypeAlias = Literal["draft", "open", "on_track", "achieved", "missed"]
MeetingStatusIn: TypeAlias = Literal["scheduled", "held", "cancelled"]


def acting(action: Action) -> Any:
    """The caller, who must hold a role that may do ``action`` (403 before the body is read)."""
    base = require(Role.SUPERVISOR, Role.SPECIALIST)

    # A default, not Annotated: the annotation is a string here (postponed evaluation), and
    # a local name inside it could not be resolved.
    async def dependency(principal: Principal = Depends(base)) -> Principal:
        check_action(principal, action)
        return principal

    return Depends(dependency)


MeetingRecorder = Annotated[Principal, acting(Action.RECORD_MEETING)]
PlanEditor = Annotated[Principal, acting(Action.EDIT_PLAN)]
NoteAdder = Annotated[Principal, acting(Action.ADD_PROGRESS_NOTE)]
Decider = Annotated[Principal, acting(Action.RECORD_DECISION)]
Acknowledger = Annotated[Principal, acting(Action.ACKNOWLEDGE)]
Commenter = Annotated[Principal, acting(Action.COMMENT)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeetingIn(_In):
    """A meeting as a whole (POST creates one, PUT replaces one's fields)."""

    status: MeetingStatusIn = Field(
        default="held", description="scheduled or held on create; see the transitions."
    )
    quarter: str | None = Field(default=None, description="Appraisal quarter discussed (YYYYQn).")
    scheduled_for: AwareDatetime | None = Field(
        default=None, description="When it is planned (with an offset); needed when scheduled."
    )
    held_on: dt.date | None = Field(default=None, description="Local date it was held.")
    date: dt.date | None = Field(
        default=None, description="Older name of held_on (a held meeting's date)."
    )
    participants: list[DirectoryId] = Field(min_length=1, max_length=50)
    notes: Notes = ""
    agreed_actions: list[ActionText] = Field(default_factory=list, max_length=50)


class MeetingPatch(_In):
    """Only the fields sent change (defaults here are never applied)."""

    status: MeetingStatusIn = "held"
    quarter: str | None = None
    scheduled_for: AwareDatetime | None = None
    held_on: dt.date | None = None
    participants: list[DirectoryId] = Field(default_factory=list, min_length=1, max_length=50)
    notes: Notes = ""
    agreed_actions: list[ActionText] = Field(default_factory=list, max_length=50)


class GoalIn(_In):
    kpi: KpiKey
    target: float
    due: dt.date
    baseline: float | None = None


class PlanIn(_In):
    goals: list[GoalIn] = Field(default_factory=list, max_length=20)
    notes: Notes = ""
    status: PlanStatusIn | None = None


class StatusIn(_In):
    status: PlanStatusIn


class TextIn(_In):
    text: Text


class DecisionIn(_In):
    type: Annotated[str, StringConstraints(min_length=1, max_length=64), TEXT_RULE] = Field(
        description='An incentive action code (e.g. pay_adjustment_candidate) or "none".'
    )
    # NaN and infinities are refused by check_decision (naming the field), not by pydantic,
    # whose error would echo a NaN that a JSON answer cannot carry.
    amount: float | None = Field(default=None, description="E.g. the pay adjustment's amount.")
    level: Annotated[str, StringConstraints(min_length=1, max_length=200), TEXT_RULE] | None = (
        Field(default=None, description="E.g. the new grade or level, or a percentage.")
    )
    note: Notes = ""


def canonical_quarter(raw: str) -> str:
    year, q = parse_quarter(raw)
    return f"{year:04d}Q{q}"


def query_quarter(raw: str) -> str:
    try:
        return canonical_quarter(raw)
    except WindowError as exc:
        raise bad_param("query", "quarter", str(exc)) from None


def body_quarter(raw: str, name: str = "quarter") -> str:
    try:
        return canonical_quarter(raw)
    except WindowError as exc:
        raise bad_param("body", name, str(exc)) from None


def field_error(exc: FieldError) -> HTTPException:
    return bad_param("body", exc.field, exc.message)


def conflict(exc: CycleConflict | ValueError) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))
