"""SQLAlchemy tables of the ingest service: durable intake counters (``ingest_stats``)."""

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
