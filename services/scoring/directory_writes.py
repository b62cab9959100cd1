"""Write-side SQL of the directory (teams, specialists): the admin's create-or-replace."""

from __future__ import annotations

from collections.abc import Mapping

from services.scoring.db import Conn
from services.scoring.queries import SpecialistRow, TeamRow, aliases_of
from shared.directory import normalize_alias


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


class AliasTaken(Exception):
    """An alias already maps another specialist (one agent is one specialist)."""

    def __init__(self, kind: str, alias: str, owner: str) -> None:
        super().__init__(f"{kind} alias {alias!r} already belongs to specialist {owner!r}")
        self.kind, self.alias, self.owner = kind, alias, owner


async def replace_aliases(
    conn: Conn, specialist_id: str, aliases: Mapping[str, str]
) -> dict[str, str]:
    """Make ``aliases`` the specialist's only ones (inside the caller's transaction)."""
    wanted = {kind: normalize_alias(kind, alias) for kind, alias in aliases.items()}
    owners = await conn.fetch(
        """
        SELECT kind, alias, specialist_id FROM specialist_aliases
        WHERE (kind, alias) IN (SELECT * FROM unnest($1::text[], $2::text[]))
          AND specialist_id <> $3
        ORDER BY kind
        """,
        list(wanted),
        list(wanted.values()),
        specialist_id,
    )
    if owners:
        first = owners[0]
        raise AliasTaken(first["kind"], first["alias"], first["specialist_id"])
    await conn.execute("DELETE FROM specialist_aliases WHERE specialist_id = $1", specialist_id)
    await conn.execute(
        """
        INSERT INTO specialist_aliases (kind, alias, specialist_id)
        SELECT kind, alias, $3 FROM unnest($1::text[], $2::text[]) AS a(kind, alias)
        """,
        list(wanted),
        list(wanted.values()),
        specialist_id,
    )
    return await aliases_of(conn, specialist_id)
