"""Team digests: the `team_digests` table scoring fills (one row per team and period) and notify
relays.

Scoring builds a team's digest of a finished period and records it under (team, period), so
recording it again (another scan, another replica, an admin's send) adds nothing. Notify
turns each unrelayed row into deliveries and sets ``relayed_at`` in the same transaction.

The functions take the driver connection of the caller's transaction (asyncpg, untyped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson

from shared.webhooks import DigestContent

# pg_notify channel: notify relays at once instead of at its next period.
NOTIFY_CHANNEL: Final = "kpi_team_digests"

# asyncpg has no type stubs; callers pass the raw connection of their transaction.
Raw: TypeAlias = Any


@dataclass(frozen=True)
class Digest:
    """A stored digest: the content scoring recorded, and when notify relayed it."""

    id: int
    team_id: str
    period: str
    content: DigestContent
    created_at: dt.datetime
    relayed_at: dt.datetime | None
    requested_by: str | None


_COLUMNS: Final = (
    "id, team_id, period, content::text AS content, created_at, relayed_at, requested_by"
)


def _digest(row: Any) -> Digest:
    return Digest(
        id=int(row["id"]),
        team_id=row["team_id"],
        period=row["period"],
        content=DigestContent.model_validate_json(row["content"]),
        created_at=row["created_at"],
        relayed_at=row["relayed_at"],
        requested_by=row["requested_by"],
    )


async def record_digest(
    conn: Raw, content: DigestContent, at: dt.datetime, requested_by: str | None = None
) -> Digest | None:
    """Insert the digest of (team, period) unless there is one (ON CONFLICT DO NOTHING); the
    new row, or None when it was recorded before. Wakes notify when new."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO team_digests
            (team_id, period, period_kind, period_start, period_end, content, created_at,
             requested_by)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
        ON CONFLICT (team_id, period) DO NOTHING
        RETURNING {_COLUMNS}
        """,
        content.team_id,
        content.period.name,
        content.period.kind,
        content.period.start,
        content.period.end,
        orjson.dumps(content.model_dump(mode="json")).decode(),
        at,
        requested_by,
    )
    if row is None:
        return None
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(row["id"]))
    return _digest(row)


async def relay_again(conn: Raw, digest_id: int) -> None:
    """Have notify relay a recorded digest once more (an admin's send): each delivery's key
    is (digest, channel), so only the team's channels that never had it get it now."""
    await conn.execute("UPDATE team_digests SET relayed_at = NULL WHERE id = $1", digest_id)
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(digest_id))


async def get_digest(conn: Raw, team_id: str, period: str) -> Digest | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM team_digests WHERE team_id = $1 AND period = $2",
        team_id,
        period,
    )
    return None if row is None else _digest(row)


async def teams_without_digest(conn: Raw, period: str) -> list[str]:
    """Teams with at least one member and no digest of ``period`` yet, by id."""
    rows = await conn.fetch(
        """
        SELECT t.id FROM teams t
        WHERE EXISTS (SELECT 1 FROM specialists s WHERE s.team_id = t.id)
          AND NOT EXISTS (SELECT 1 FROM team_digests g WHERE g.team_id = t.id AND g.period = $1)
        ORDER BY t.id
        """,
        period,
    )
    return [r["id"] for r in rows]


async def claim_unrelayed(conn: Raw, limit: int = 100) -> list[Digest]:
    """Digests not turned into deliveries yet, oldest first, locked until commit.

    SKIP LOCKED lets several notify replicas relay without announcing one digest twice.
    """
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM team_digests
        WHERE relayed_at IS NULL
        ORDER BY id LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [_digest(r) for r in rows]


async def mark_relayed(conn: Raw, ids: Sequence[int], at: dt.datetime) -> None:
    if ids:
        await conn.execute(
            "UPDATE team_digests SET relayed_at = $2 WHERE id = ANY($1::bigint[])",
            list(ids),
            at,
        )


async def list_digests(conn: Raw, limit: int = 1000) -> list[Digest]:
    """Every stored digest, oldest first (tools and tests)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM team_digests ORDER BY id LIMIT $1", limit)
    return [_digest(r) for r in rows]
