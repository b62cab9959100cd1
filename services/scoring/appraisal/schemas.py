"""Response models of the appraisal routes: the bodies the handlers build, field by field."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, TypeAlias

from pydantic import Field

from services.scoring.api.schemas import KpiOut, WindowOut, _Out

OverallGrade: TypeAlias = Literal["excellent", "qualified", "unqualified", "insufficient_data"]
PlanStatus: TypeAlias = Literal["draft", "open", "on_track", "achieved", "missed"]
MeetingStatus: TypeAlias = Literal["scheduled", "held", "cancelled"]
QuarterMeetingStatus: TypeAlias = Literal["none", "scheduled", "held", "cancelled"]
CycleStep: TypeAlias = Literal["finalized", "meeting_held", "decision", "acknowledged"]


class AppraisalBasis(_Out):
    unqualified: list[str] = Field(description="KPIs with enough data graded unqualified.")
    excellent: list[str]
    insufficient_data: list[str]
    training_delivered: bool


class Incentive(_Out):
    actions: list[str] = Field(description="Suggested action codes (KPI_INCENTIVES).")
    consecutive_excellent: int
    labels: dict[str, list[str]] = Field(description="The actions' labels by language.")


class AppraisalComputed(_Out):
    """The computed part of an appraisal: what finalisation freezes."""

    kpis: dict[str, KpiOut]
    overall_grade: OverallGrade
    insufficient_data: list[str]
    basis: AppraisalBasis
    incentive: Incentive
    calendar: str


class Difference(_Out):
    field: str = Field(description="Field path, e.g. kpis.resolution_rate.grade.")
    frozen: Any
    live: Any


class Decision(_Out):
    """An incentive decision actually taken (the suggestion is ``incentive``)."""

    id: int
    type: str = Field(description='An incentive action code, or "none".')
    labels: dict[str, str] = Field(description="The type's label by language (en, zh-CN).")
    amount: float | None
    level: str | None
    note: str
    decided_by: str
    decided_at: dt.datetime


class AppraisalComment(_Out):
    text: str
    commented_at: dt.datetime = Field(description="When the comment was first written.")
    updated_at: dt.datetime = Field(description="When it was last changed.")


class Appraisal(AppraisalComputed):
    specialist_id: str
    name: str | None
    team_id: str | None
    quarter: str
    window: WindowOut
    finalized: bool
    finalized_by: str | None
    finalized_at: dt.datetime | None
    live: AppraisalComputed | None = Field(description="The live recomputation when finalised.")
    differs: bool
    differences: list[Difference]
    provisional: bool = Field(
        description="The quarter is still running and not finalised: grades may still move."
    )
    meeting_status: QuarterMeetingStatus = Field(
        description="The quarter's feedback meeting: held over scheduled over cancelled."
    )
    decision: Decision | None = Field(description="The current incentive decision taken.")
    acknowledged_at: dt.datetime | None = Field(
        description="When the specialist acknowledged the finalised appraisal."
    )
    comment: AppraisalComment | None = Field(description="The specialist's comment.")


class Finalization(_Out):
    team_id: str | None = Field(description="null: the whole organisation.")
    finalized_by: str
    finalized_at: dt.datetime
    frozen: int


class TeamAppraisals(_Out):
    quarter: str
    team: str | None
    window: WindowOut
    calendar: str
    summary: dict[str, int] = Field(description="Specialists per overall grade.")
    finalizations: list[Finalization]
    appraisals: list[Appraisal]


class FinalizeResult(_Out):
    quarter: str
    team: str | None
    finalized_by: str
    finalized_at: dt.datetime
    frozen: int = Field(description="Appraisals frozen now.")
    already_finalized: int
    plan_quarter: str
    plans_proposed: list[str] = Field(description="Specialists given a draft plan.")


class Meeting(_Out):
    id: int
    specialist_id: str
    quarter: str | None = Field(description="The appraisal quarter the meeting discusses.")
    status: MeetingStatus
    date: dt.date = Field(description="held_on once held, else the scheduled local day.")
    scheduled_for: dt.datetime | None
    held_on: dt.date | None
    participants: list[str]
    notes: str
    agreed_actions: list[str]
    created_by: str
    created_at: dt.datetime
    updated_by: str | None
    updated_at: dt.datetime | None
    acknowledged_at: dt.datetime | None = Field(
        description="When the specialist acknowledged the held record (cleared when it changes)."
    )


class MeetingList(_Out):
    specialist_id: str
    meetings: list[Meeting]


class Measured(_Out):
    from_: dt.date = Field(alias="from")
    to: dt.date


class GoalOut(_Out):
    kpi: str
    target: float
    due: dt.date
    baseline: float | None
    value: float | None
    denominator: int | None
    status: Literal["achieved", "on_track", "behind", "missed", "insufficient_data"]
    measured: Measured


class PlanProgress(_Out):
    suggested_status: Literal["open", "on_track", "achieved", "missed"]
    as_of: dt.date


class ProgressNote(_Out):
    id: int
    text: str
    author: str
    author_role: str = Field(description="admin, supervisor or specialist.")
    created_at: dt.datetime


class Plan(_Out):
    specialist_id: str
    quarter: str
    status: PlanStatus
    goals: list[GoalOut]
    progress: PlanProgress
    notes: str
    origin: str
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime
    progress_notes: list[ProgressNote] = Field(description="The progress log, oldest first.")


class PlanList(_Out):
    plans: list[Plan]


# -- the cycle --------------------------------------------------------------------------


class Acknowledgement(_Out):
    specialist_id: str
    quarter: str
    acknowledged_at: dt.datetime = Field(description="The first acknowledgement (kept).")


class CommentOut(_Out):
    specialist_id: str
    quarter: str
    comment: AppraisalComment


class DecisionType(_Out):
    code: str = Field(description='An incentive action code, or "none".')
    labels: dict[str, str] = Field(description="Its label by language (en, zh-CN).")


class DecisionHistory(_Out):
    specialist_id: str
    quarter: str
    suggested: list[str] = Field(description="The suggested incentive actions (frozen).")
    current: Decision | None
    history: list[Decision] = Field(description="Every decision recorded, latest first.")
    types: list[DecisionType] = Field(
        description="What a decision may record: every action code the platform and "
        'KPI_INCENTIVES know (for any grade), then "none".'
    )


class PreviewEntry(_Out):
    specialist_id: str
    name: str | None
    team_id: str | None
    overall_grade: OverallGrade
    incentive: list[str] = Field(description="The suggested actions that would freeze.")
    plan_proposed: bool = Field(description="A draft plan would be made for plan_quarter.")


class FinalizePreview(_Out):
    quarter: str
    team: str | None
    can_finalize: bool
    reason: str | None = Field(description="Why it cannot be finalised now.")
    plan_quarter: str
    freeze: list[PreviewEntry] = Field(description="Appraisals that would be frozen now.")
    already_finalized: list[str]
    plans_proposed: list[str]


class CycleEntry(_Out):
    specialist_id: str
    name: str | None
    team_id: str | None
    overall_grade: OverallGrade
    finalized: bool
    finalized_at: dt.datetime | None
    provisional: bool
    suggested: list[str]
    meeting_status: QuarterMeetingStatus
    meeting_id: int | None
    meeting_date: dt.date | None
    plan_quarter: str
    plan_status: PlanStatus | None
    decision: Decision | None
    acknowledged_at: dt.datetime | None
    commented: bool
    missing: list[CycleStep] = Field(description="Steps not done yet, in cycle order.")


class CycleSummary(_Out):
    specialists: int
    finalized: int
    meetings_held: int
    decisions: int
    acknowledged: int


class TeamCycle(_Out):
    quarter: str
    team: str | None
    plan_quarter: str
    summary: CycleSummary
    missing_meeting: list[str] = Field(description="Specialists without a held meeting.")
    missing_decision: list[str] = Field(description="Specialists without a decision.")
    entries: list[CycleEntry]
