"""SQLAlchemy tables of ingest: intake counters and helpdesk agents no specialist maps yet."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, String, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class IngestStat(Base):
    """Messages taken in, per source topic (or ``http`` / ``replay``), outcome and reason code."""

    __tablename__ = "ingest_stats"

    topic: Mapped[str] = mapped_column(String(300), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    # '' for published messages so the key stays a plain primary key.
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class UnmappedAgent(Base):
    """A helpdesk agent seen in a native webhook that no directory alias maps to a specialist.

    Its events are counted under ``counted_as`` (``vendor:agent-id``); an admin maps the agent
    with ``PUT /v1/specialists/{id}`` aliases, which only affects events received afterwards.
    """

    __tablename__ = "webhook_unmapped_agents"

    vendor: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The vendor's agent id, or the e-mail address when the vendor gives no id (Freshdesk).
    agent_id: Mapped[str] = mapped_column(String(320), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    counted_as: Mapped[str] = mapped_column(String(128))
    events: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class WebhookReceipt(Base):
    """When ingest first received a Freshdesk body, per ticket and change family.

    Freshdesk's bodies carry no time or delivery id; a retry of the same body reuses this
    time (and so the same event ids). Rows older than the redelivery window are deleted.
    """

    __tablename__ = "webhook_receipts"

    vendor: Mapped[str] = mapped_column(String(32), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    family: Mapped[str] = mapped_column(String(32), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
