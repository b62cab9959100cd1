"""Write-side SQL of the directory (teams, specialists): the admin's create-or-replace."""

from __future__ import annotations

from services.scoring.db import Conn
from services.scoring.queries import SpecialistRow, TeamRow


def _upsert_sql(table: str, column: str) -> str:
    """Create-or-replace of a directory row ``(id, name, column)``, returning the stored row.

    Both directory tables have this shape; the names are constants of this module, never input.
    """
    return f"""
        INSERT INTO {table} (id, name, {column}) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE
            SET name = excluded.name, {column} = excluded.{column}, updated_at = now()
        RETURNING id, name, {column}
    """


_UPSERT_TEAM = _upsert_sql("teams", "supervisor")
_UPSERT_SPECIALIST = _upsert_sql("specialists", "team_id")


async def upsert_team(conn: Conn, team_id: str, name: str, supervisor: str | None) -> TeamRow:
    """Create or replace a team (inside the caller's transaction)."""
    return TeamRow.of(await conn.fetchrow(_UPSERT_TEAM, team_id, name, supervisor))


async def upsert_specialist(
    conn: Conn, specialist_id: str, name: str | None, team_id: str | None
) -> SpecialistRow:
    """Create or replace a specialist's entry (inside the caller's transaction)."""
    return SpecialistRow.of(await conn.fetchrow(_UPSERT_SPECIALIST, specialist_id, name, team_id))
