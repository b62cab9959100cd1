"""Notify tables: alert state, episodes, transitions, channels, silences, delivery outbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

ID_LENGTH = 128
KPI_LENGTH = 40


class AlertStateRow(Base):
    """Current `rules.AlertState` of one (specialist, KPI) plus its last observation."""

    __tablename__ = "alert_states"

    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kpi: Mapped[str] = mapped_column(String(KPI_LENGTH), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONB)
    last_obs: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), index=True)
    episode: Mapped[int] = mapped_column(Integer)
    alert_id: Mapped[str] = mapped_column(String(36))
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    observed_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class AlertEpisode(Base):
    """One fired episode (the thing the API calls an alert), kept after it resolves."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("status IN ('firing', 'resolved')", name="status"),
        Index("ix_alerts_specialist_id", "specialist_id", "kpi"),
    )

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    kpi: Mapped[str] = mapped_column(String(KPI_LENGTH))
    episode: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    window: Mapped[str | None] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)
    qualified: Mapped[float | None] = mapped_column(Float)
    grade: Mapped[str | None] = mapped_column(String(32))
    samples: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]
    acked_at: Mapped[dt.datetime | None]
    acked_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class AlertEvent(Base):
    """Transition log (fired, reminded, resolved, acked, pending, cleared)."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(36), index=True)
    specialist_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    kpi: Mapped[str] = mapped_column(String(KPI_LENGTH))
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    transition: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)


class ChannelRow(Base):
    """A notification target; `team_id` NULL means organisation-wide. `config` holds secrets."""

    __tablename__ = "channels"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('webhook', 'dingtalk', 'wecom', 'feishu', 'slack', 'email')", name="kind"
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    lang: Mapped[str | None] = mapped_column(String(8))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Silence(Base):
    """Mutes notifications for a specialist and/or KPI until a time (owed ones follow later)."""

    __tablename__ = "silences"
    __table_args__ = (
        CheckConstraint("specialist_id IS NOT NULL OR kpi IS NOT NULL", name="target"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    specialist_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    kpi: Mapped[str | None] = mapped_column(String(KPI_LENGTH))
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    until: Mapped[dt.datetime] = mapped_column(index=True)
    comment: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Delivery(Base):
    """Outbox row: one message (one or several grouped alerts) to one channel."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed')", name="status"),
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
        ),
        Index("ix_deliveries_group_key", "group_key", "created_at"),
        Index("ix_deliveries_alert_ids", "alert_ids", postgresql_using="gin"),
        Index("ix_deliveries_failed", "id", postgresql_where=text("status = 'failed'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_key: Mapped[str] = mapped_column(String(64), unique=True)
    channel_id: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(300))
    team_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    alert_ids: Mapped[list[str]] = mapped_column(ARRAY(String(36)))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime]
    lease_until: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[dt.datetime | None]
    # A resend starts a fresh retry budget at resent_at (else created_at); backoff and the
    # attempt cap count only the attempts made after attempts_before_resend.
    resent_at: Mapped[dt.datetime | None]
    resent_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    resends: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    attempts_before_resend: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class DeliveryAttempt(Base):
    """Every send attempt of a delivery, successful or not."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str | None] = mapped_column(String(128))
