"""Directory tables shared by every service: teams, specialists and their helpdesk aliases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.settings import WEBHOOK_VENDORS

ID_LENGTH = 128


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    supervisor: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class Specialist(Base):
    __tablename__ = "specialists"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[str | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


# Alias kinds: a helpdesk's own agent id (one per vendor) or an e-mail address any vendor gives.
EMAIL_ALIAS = "email"
ALIAS_KINDS = (*WEBHOOK_VENDORS, EMAIL_ALIAS)
ALIAS_LENGTH = 320  # an e-mail address can be up to 320 characters


class SpecialistAlias(Base):
    """A helpdesk agent id or e-mail that native webhooks resolve to a specialist.

    Unique per (kind, alias): one agent is one specialist. Written by scoring's directory
    routes, read by ingest's webhook connectors.
    """

    __tablename__ = "specialist_aliases"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    alias: Mapped[str] = mapped_column(String(ALIAS_LENGTH), primary_key=True)
    specialist_id: Mapped[str] = mapped_column(
        ForeignKey("specialists.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


def normalize_alias(kind: str, alias: str) -> str:
    """Stored form of an alias: e-mail addresses compare case-insensitively, ids verbatim."""
    alias = alias.strip()
    return alias.lower() if kind == EMAIL_ALIAS else alias
