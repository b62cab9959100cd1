"""Scoring tables: event dedup, stored offsets, ticket/session state, aggregates, outbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Date,
    Float,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    Sequence,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

ID_LENGTH = 128
SOURCE_LENGTH = 200
METRIC_LENGTH = 40
CHANNEL_LENGTH = 64  # kpi.breakdown.MAX_CHANNEL_CHARS

OUTBOX_VERSION_SEQ = Sequence("score_outbox_version_seq", metadata=Base.metadata)


class ProcessedEvent(Base):
    """One row per event_id applied within the replay horizon; the first stored payload wins.

    Range-partitioned by ``generation`` (migration 0020; partitions are created and dropped
    by the dedup retention, see services/scoring/engine/partitions.py).
    """

    __tablename__ = "processed_events"
    __table_args__ = ({"postgresql_partition_by": "RANGE (generation)"},)

    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    payload_hash: Mapped[str] = mapped_column(CHAR(64))
    first_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    generation: Mapped[int] = mapped_column(
        Integer, primary_key=True, server_default=func.kpi_dedup_generation()
    )


class EventConflict(Base):
    """A known event_id seen again with a different payload (ignored, recorded)."""

    __tablename__ = "event_conflicts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    payload_hash: Mapped[str] = mapped_column(CHAR(64))
    seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class ConsumerOffset(Base):
    """Next Kafka offset to apply per partition, committed with the batch's effects."""

    __tablename__ = "consumer_offsets"
    __table_args__ = ({"postgresql_with": {"fillfactor": 50}},)  # migration 0006

    group_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class TicketStateRow(Base):
    """``services.scoring.kpi.ticket.TicketState.to_json()`` per ticket (``{}`` = no events yet)."""

    __tablename__ = "ticket_states"
    __table_args__ = ({"postgresql_with": {"fillfactor": 80}},)  # migration 0006

    ticket_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    # json, not jsonb (migration 0006): only ever written and read whole, as text.
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class TrainingSessionRow(Base):
    """``services.scoring.kpi.training.TrainingSession.to_json()`` per session."""

    __tablename__ = "training_sessions"
    __table_args__ = ({"postgresql_with": {"fillfactor": 80}},)  # migration 0006

    session_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class KpiDaily(Base):
    """Sum of contributions per specialist, local day and KPI key; windows sum these rows."""

    __tablename__ = "kpi_daily"
    __table_args__ = (
        Index("ix_kpi_daily_day", "day"),
        {"postgresql_with": {"fillfactor": 80}},  # migration 0006
    )

    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(METRIC_LENGTH), primary_key=True)
    num: Mapped[float] = mapped_column(Float)
    den: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class KpiFact(Base):
    """The same deltas per source (ticket/session/event): explains every kpi_daily row."""

    __tablename__ = "kpi_facts"
    # Range-partitioned by month of day (migration 0020), fillfactor 90 on every partition.
    __table_args__ = ({"postgresql_partition_by": "RANGE (day)"},)

    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    metric: Mapped[str] = mapped_column(String(METRIC_LENGTH), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH), primary_key=True)
    num: Mapped[float] = mapped_column(Float)
    den: Mapped[int] = mapped_column(BigInteger)


class KpiChannelDaily(Base):
    """kpi_daily's ticket-borne metrics split by the ticket's channel (migration 0017)."""

    __tablename__ = "kpi_channel_daily"

    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(METRIC_LENGTH), primary_key=True)
    channel: Mapped[str] = mapped_column(String(CHANNEL_LENGTH), primary_key=True)
    num: Mapped[float] = mapped_column(Float)
    den: Mapped[int] = mapped_column(BigInteger)


class KpiTimeBucket(Base):
    """How many tickets' time values fell in each log-spaced bucket (kpi/histogram.py)."""

    __tablename__ = "kpi_time_buckets"

    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(METRIC_LENGTH), primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class DataQualityIssue(Base):
    """A current problem in the input data that KPIs work around (e.g. negative response)."""

    __tablename__ = "data_quality_issues"

    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH), primary_key=True)
    issue: Mapped[str] = mapped_column(String(64), primary_key=True)
    detected_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class ScoreOutbox(Base):
    """Specialists whose alert-window KPIs must be (re)published to kpi.scores."""

    __tablename__ = "score_outbox"
    __table_args__ = ({"postgresql_with": {"fillfactor": 70}},)  # migration 0006

    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))
    enqueued_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), index=True)
    version: Mapped[int] = mapped_column(
        BigInteger, server_default=text("nextval('score_outbox_version_seq')")
    )


# -- quarterly appraisal (migration 0005) ------------------------------------------------

QUARTER_LENGTH = 7  # "2026Q3"


class AppraisalSnapshot(Base):
    """A finalised appraisal, frozen: later events never change it (live is shown beside)."""

    __tablename__ = "appraisal_snapshots"
    __table_args__ = (Index("ix_appraisal_snapshots_quarter_team", "quarter", "team_id"),)

    quarter: Mapped[str] = mapped_column(String(QUARTER_LENGTH), primary_key=True)
    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)
    finalized_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    finalized_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class AppraisalFinalization(Base):
    """Who finalised which quarter for which team (NULL team = organisation-wide), when."""

    __tablename__ = "appraisal_finalizations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    quarter: Mapped[str] = mapped_column(String(QUARTER_LENGTH), index=True)
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    finalized_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    finalized_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    frozen: Mapped[int] = mapped_column(Integer)


class FeedbackMeeting(Base):
    """A feedback meeting with a specialist: scheduled, then held (or cancelled) (0005, 0013).

    ``met_on`` is the meeting's date (held_on once held, else the scheduled local day).
    """

    __tablename__ = "feedback_meetings"
    __table_args__ = (
        Index("ix_feedback_meetings_specialist", "specialist_id", "met_on"),
        Index("ix_feedback_meetings_quarter", "quarter", "specialist_id"),
        CheckConstraint("status IN ('scheduled', 'held', 'cancelled')", name="status"),
        CheckConstraint("(status = 'held') = (held_on IS NOT NULL)", name="held_on"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    quarter: Mapped[str | None] = mapped_column(String(QUARTER_LENGTH))
    met_on: Mapped[dt.date] = mapped_column(Date)
    participants: Mapped[list[str]] = mapped_column(JSONB)
    notes: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    status: Mapped[str] = mapped_column(String(16), server_default="held")
    scheduled_for: Mapped[dt.datetime | None]
    held_on: Mapped[dt.date | None] = mapped_column(Date)
    agreed_actions: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    updated_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    updated_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]


class ImprovementPlan(Base):
    """One plan per specialist per quarter; goals are ``appraisal.Goal.to_json()`` objects."""

    __tablename__ = "improvement_plans"
    __table_args__ = (
        Index("ix_improvement_plans_quarter", "quarter"),
        CheckConstraint(
            "status IN ('draft', 'open', 'on_track', 'achieved', 'missed')",
            name="status",
        ),
    )

    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    quarter: Mapped[str] = mapped_column(String(QUARTER_LENGTH), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    goals: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    notes: Mapped[str] = mapped_column(Text, server_default="")
    origin: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


# -- the appraisal cycle (migration 0013) ------------------------------------------------


def _snapshot_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["quarter", "specialist_id"],
        ["appraisal_snapshots.quarter", "appraisal_snapshots.specialist_id"],
        ondelete="CASCADE",
    )


class AppraisalResponse(Base):
    """The specialist's side of a finalised appraisal: when acknowledged, their one comment."""

    __tablename__ = "appraisal_responses"
    __table_args__ = (_snapshot_fk(),)

    quarter: Mapped[str] = mapped_column(String(QUARTER_LENGTH), primary_key=True)
    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    acknowledged_at: Mapped[dt.datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)
    commented_at: Mapped[dt.datetime | None]
    comment_updated_at: Mapped[dt.datetime | None]


class AppraisalDecision(Base):
    """An incentive decision taken on a finalised appraisal; the latest row is the current one."""

    __tablename__ = "appraisal_decisions"
    __table_args__ = (
        _snapshot_fk(),
        Index("ix_appraisal_decisions_quarter_specialist", "quarter", "specialist_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    quarter: Mapped[str] = mapped_column(String(QUARTER_LENGTH))
    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    type: Mapped[str] = mapped_column(String(64))
    amount: Mapped[float | None] = mapped_column(Float)
    level: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    decided_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class PlanProgressNote(Base):
    """One entry of an improvement plan's progress log (never edited: a correction is a new one)."""

    __tablename__ = "plan_progress_notes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["specialist_id", "quarter"],
            ["improvement_plans.specialist_id", "improvement_plans.quarter"],
            ondelete="CASCADE",
        ),
        Index("ix_plan_progress_notes_plan", "specialist_id", "quarter", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    quarter: Mapped[str] = mapped_column(String(QUARTER_LENGTH))
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(ID_LENGTH))
    author_role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
