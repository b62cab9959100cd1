"""Response models of the appraisal routes: the bodies the handlers build, field by field."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, TypeAlias

from pydantic import Field

from services.scoring.api.schemas import KpiOut, WindowOut, _Out

OverallGrade: TypeAlias = Literal["excellent", "qualified", "unqualified", "insufficient_data"]
PlanStatus: TypeAlias = Literal["draft", "open", "on_track", "achieved", "missed"]


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
    quarter: str | None
    date: dt.date
    participants: list[str]
    notes: str
    created_by: str
    created_at: dt.datetime


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


class PlanList(_Out):
    plans: list[Plan]
