"""SQL of the native webhooks: directory aliases (read), unmapped agents, Freshdesk receipts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from services.ingest.connectors.base import Agent
from shared.directory import SpecialistAlias


async def load_aliases(session: AsyncSession) -> dict[tuple[str, str], str]:
    """Every (kind, alias) -> specialist id; small (one row per agent), cached by the caller."""
    rows = await session.execute(
        select(SpecialistAlias.kind, SpecialistAlias.alias, SpecialistAlias.specialist_id)
    )
    return {(kind, alias): specialist for kind, alias, specialist in rows}


_RECORD = text(
    """
    INSERT INTO webhook_unmapped_agents AS u
        (vendor, agent_id, email, name, counted_as, events, first_seen_at, last_seen_at)
    SELECT v, a, e, n, c, 1, now(), now()
    FROM unnest(:vendors, :agents, :emails, :names, :counted) AS r(v, a, e, n, c)
    ON CONFLICT (vendor, agent_id) DO UPDATE SET
        email = coalesce(excluded.email, u.email),
        name = coalesce(excluded.name, u.name),
        events = u.events + 1,
        last_seen_at = now()
    """
).bindparams(
    *(
        bindparam(n, type_=ARRAY(String()))
        for n in ("vendors", "agents", "emails", "names", "counted")
    )
)


async def record_unmapped(session: AsyncSession, agents: Sequence[tuple[Agent, str]]) -> None:
    """Upsert the unmapped agents of one request (each once), with what they count as."""
    unique = sorted({(a.vendor, a.key): (a, c) for a, c in agents}.items())
    if not unique:
        return
    rows = [pair for _, pair in unique]
    await session.execute(
        _RECORD,
        {
            "vendors": [a.vendor for a, _ in rows],
            "agents": [a.key for a, _ in rows],
            "emails": [a.email for a, _ in rows],
            "names": [(a.name or "")[:200] or None for a, _ in rows],
            "counted": [c for _, c in rows],
        },
    )


# An agent stops being unmapped once its id or its e-mail has an alias.
_UNMAPPED = text(
    """
    SELECT u.vendor, u.agent_id, u.email, u.name, u.counted_as, u.events,
           u.first_seen_at, u.last_seen_at
    FROM webhook_unmapped_agents u
    WHERE (:vendor IS NULL OR u.vendor = :vendor)
      AND NOT EXISTS (
        SELECT 1 FROM specialist_aliases s
        WHERE (s.kind = u.vendor AND s.alias = u.agent_id)
           OR (s.kind = 'email' AND s.alias = lower(coalesce(u.email, u.agent_id)))
      )
    ORDER BY u.last_seen_at DESC, u.vendor, u.agent_id
    """
).bindparams(bindparam("vendor", type_=String()))


async def list_unmapped(session: AsyncSession, vendor: str | None) -> list[dict[str, object]]:
    rows = await session.execute(_UNMAPPED, {"vendor": vendor})
    return [dict(row._mapping) for row in rows]


# The first receipt of this body, unless the family's latest body differs or is too old.
_RECEIPT = text(
    """
    INSERT INTO webhook_receipts AS r (vendor, ticket_id, family, body_sha256, received_at)
    VALUES (:vendor, :ticket_id, :family, :sha, :now)
    ON CONFLICT (vendor, ticket_id, family) DO UPDATE SET
        received_at = CASE
            WHEN r.body_sha256 = excluded.body_sha256 AND r.received_at > :oldest
            THEN r.received_at ELSE excluded.received_at END,
        body_sha256 = excluded.body_sha256
    RETURNING received_at
    """
)


async def first_receipt(
    session: AsyncSession,
    vendor: str,
    key: tuple[str, str],
    sha: str,
    now: dt.datetime,
    window: dt.timedelta,
) -> dt.datetime:
    """When this body was first received (``now`` unless it is a retry within ``window``)."""
    ticket_id, family = key
    found = await session.execute(
        _RECEIPT,
        {
            "vendor": vendor,
            "ticket_id": ticket_id,
            "family": family,
            "sha": sha,
            "now": now,
            "oldest": now - window,
        },
    )
    moment: dt.datetime = found.scalar_one()
    return moment


async def forget_receipts(session: AsyncSession, before: dt.datetime) -> None:
    await session.execute(
        text("DELETE FROM webhook_receipts WHERE received_at < :before"), {"before": before}
    )
