"""Write-side SQL of the directory (teams, specialists): the admin's create-or-replace."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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


# -- CSV import (parsed by services.scoring.api.directory_import) -------------------------


@dataclass(frozen=True)
class CellError:
    """Why one cell (or a whole row when ``column`` is None) cannot be imported."""

    row: int
    column: str | None
    msg: str

    def text(self) -> str:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.msg}"


@dataclass(frozen=True)
class ImportRow:
    """One specialist as the file states it; fields whose column is absent are not stated."""

    row: int
    id: str
    name: str | None
    team_id: str | None
    aliases: dict[str, str | None]  # kind -> alias (None: remove it); only kinds with a column


@dataclass
class ImportPlan:
    """The parsed file: which fields it states, and its rows in file order."""

    has_name: bool
    has_team: bool
    alias_kinds: tuple[str, ...]
    rows: list[ImportRow] = field(default_factory=list)

    def states(self, column: str) -> bool:
        """Whether the file has ``column`` (``id``, ``name``, ``team_id``, ``aliases.<kind>``)."""
        if column.startswith("aliases."):
            return column.removeprefix("aliases.") in self.alias_kinds
        return {"id": True, "name": self.has_name, "team_id": self.has_team}.get(column, False)


Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class ImportedRow:
    row: int
    id: str
    outcome: Outcome


async def import_specialists(
    conn: Conn, plan: ImportPlan, *, write: bool
) -> tuple[list[ImportedRow], list[CellError]]:
    """What importing ``plan`` does to each row, and the rows the directory refuses (unknown
    team, an alias another specialist has); writes only when ``write`` and nothing is refused.

    Inside the caller's transaction; the specialists named are locked first, so what is
    compared is what gets written.
    """
    ids = [r.id for r in plan.rows]
    current = {
        r["id"]: SpecialistRow.of(r)
        for r in await conn.fetch(
            "SELECT id, name, team_id FROM specialists WHERE id = ANY($1::text[]) "
            "ORDER BY id FOR UPDATE",
            ids,
        )
    }
    held: dict[str, dict[str, str]] = {}
    for r in await conn.fetch(
        "SELECT specialist_id, kind, alias FROM specialist_aliases "
        "WHERE specialist_id = ANY($1::text[])",
        ids,
    ):
        held.setdefault(r["specialist_id"], {})[r["kind"]] = r["alias"]
    errors = await _refusals(conn, plan, ids)
    done: list[ImportedRow] = []
    changed: list[tuple[ImportRow, SpecialistRow, dict[str, str]]] = []
    for row in plan.rows:
        old = current.get(row.id)
        new = SpecialistRow(
            row.id,
            row.name if plan.has_name or old is None else old.name,
            row.team_id if plan.has_team or old is None else old.team_id,
        )
        had = held.get(row.id, {})
        wanted = {k: v for k, v in had.items() if k not in plan.alias_kinds}
        wanted.update({k: v for k, v in row.aliases.items() if v is not None})
        outcome: Outcome = (
            "created" if old is None else "unchanged" if (old, had) == (new, wanted) else "updated"
        )
        done.append(ImportedRow(row.row, row.id, outcome))
        if outcome != "unchanged":
            changed.append((row, new, wanted))
    if write and not errors and changed:
        await _write(conn, changed)
    return done, errors


async def _refusals(conn: Conn, plan: ImportPlan, ids: list[str]) -> list[CellError]:
    errors: list[CellError] = []
    teams = sorted({r.team_id for r in plan.rows if r.team_id is not None})
    known = {r["id"] for r in await conn.fetch("SELECT id FROM teams WHERE id = ANY($1)", teams)}
    for row in plan.rows:
        if row.team_id is not None and row.team_id not in known:
            msg = f"unknown team {row.team_id!r}; create it first (PUT /v1/teams/{{id}})"
            errors.append(CellError(row.row, "team_id", msg))
    pairs = [(k, a, r) for r in plan.rows for k, a in r.aliases.items() if a is not None]
    owners = await conn.fetch(
        """
        SELECT kind, alias, specialist_id FROM specialist_aliases
        WHERE (kind, alias) IN (SELECT * FROM unnest($1::text[], $2::text[]))
          AND NOT (specialist_id = ANY($3::text[]))
        """,
        [k for k, _, _ in pairs],
        [a for _, a, _ in pairs],
        ids,
    )
    owner_of = {(o["kind"], o["alias"]): o["specialist_id"] for o in owners}
    for kind, alias, row in pairs:
        owner = owner_of.get((kind, alias))
        if owner is not None:
            msg = f"{kind} alias {alias!r} already belongs to specialist {owner!r}"
            errors.append(CellError(row.row, f"aliases.{kind}", msg))
    return sorted(errors, key=lambda e: e.row)


async def _write(
    conn: Conn, changed: list[tuple[ImportRow, SpecialistRow, dict[str, str]]]
) -> None:
    for _, new, _ in changed:
        await conn.execute(_UPSERT_SPECIALIST, new.id, new.name, new.team_id)
    # Every changed specialist's aliases go before any is added, so two rows may swap one.
    await conn.execute(
        "DELETE FROM specialist_aliases WHERE specialist_id = ANY($1::text[])",
        [new.id for _, new, _ in changed],
    )
    rows = [(kind, alias, new.id) for _, new, wanted in changed for kind, alias in wanted.items()]
    await conn.execute(
        """
        INSERT INTO specialist_aliases (kind, alias, specialist_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
        """,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
