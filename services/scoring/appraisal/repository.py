"""SQL of the appraisal tables: frozen snapshots, finalisations, improvement plans.

Reads take a ``Db`` (the read pool or a connection); writes take the ``Conn`` of the
route's ``ReadDb.transaction()``, which commits them in one place. Window sums are in queries;
meetings and the rest of the cycle in cycle_repository.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.scoring.db import Conn, Db, Record

# ---------------------------------------------------------------------------
# Snapshots and finalisations
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    quarter: str
    specialist_id: str
    team_id: str | None
    body: dict[str, Any]
    finalized_by: str
    finalized_at: dt.datetime


def _snapshot(r: Record) -> Snapshot:
    return Snapshot(
        r["quarter"],
        r["specialist_id"],
        r["team_id"],
        orjson.loads(r["snapshot"]),
        r["finalized_by"],
        r["finalized_at"],
    )


async def snapshots(
    db: Db, quarters: Sequence[str], ids: Sequence[str]
) -> dict[tuple[str, str], Snapshot]:
    """Frozen appraisals by (quarter, specialist_id)."""
    if not quarters or not ids:
        return {}
    rows = await db.fetch(
        """
        SELECT quarter, specialist_id, team_id, snapshot::text AS snapshot, finalized_by,
               finalized_at
        FROM appraisal_snapshots
        WHERE quarter = ANY($1::text[]) AND specialist_id = ANY($2::text[])
        """,
        sorted(set(quarters)),
        sorted(set(ids)),
    )
    return {(r["quarter"], r["specialist_id"]): _snapshot(r) for r in rows}


async def insert_snapshots(
    conn: Conn,
    quarter: str,
    rows: Sequence[tuple[str, str | None, dict[str, Any]]],
    by: str,
    at: dt.datetime,
) -> set[str]:
    """Freeze (specialist_id, team_id, body) rows; the first freeze wins. Returns new ids."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: r[0])
    inserted = await conn.fetch(
        """
        INSERT INTO appraisal_snapshots
            (quarter, specialist_id, team_id, snapshot, finalized_by, finalized_at)
        SELECT $1, i, t, s::jsonb, $5, $6
        FROM unnest($2::text[], $3::text[], $4::text[]) AS u(i, t, s)
        ON CONFLICT (quarter, specialist_id) DO NOTHING
        RETURNING specialist_id
        """,
        quarter,
        [r[0] for r in ordered],
        [r[1] for r in ordered],
        [orjson.dumps(r[2]).decode() for r in ordered],
        by,
        at,
    )
    return {r["specialist_id"] for r in inserted}


async def record_finalization(
    conn: Conn, quarter: str, team_id: str | None, by: str, at: dt.datetime, frozen: int
) -> None:
    await conn.execute(
        """
        INSERT INTO appraisal_finalizations (quarter, team_id, finalized_by, finalized_at, frozen)
        VALUES ($1, $2, $3, $4, $5)
        """,
        quarter,
        team_id,
        by,
        at,
        frozen,
    )


async def list_finalizations(
    db: Db, quarter: str, team_ids: Collection[str] | None
) -> list[dict[str, Any]]:
    """Finalisations of a quarter; a supervisor sees their teams' and organisation-wide ones."""
    rows = await db.fetch(
        """
        SELECT team_id, finalized_by, finalized_at, frozen FROM appraisal_finalizations
        WHERE quarter = $1 AND ($2::text[] IS NULL OR team_id IS NULL OR team_id = ANY($2))
        ORDER BY finalized_at, id
        """,
        quarter,
        None if team_ids is None else sorted(team_ids),
    )
    return [
        {
            "team_id": r["team_id"],
            "finalized_by": r["finalized_by"],
            "finalized_at": r["finalized_at"],
            "frozen": r["frozen"],
        }
        for r in rows
    ]


# ---------------------------------------------------------------------------
# Improvement plans
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRow:
    specialist_id: str
    quarter: str
    status: str
    goals: list[dict[str, Any]]
    notes: str
    origin: str
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime
    team_id: str | None = None


_PLAN_COLUMNS = (
    "p.specialist_id, p.quarter, p.status, p.goals::text AS goals, p.notes, p.origin, "
    "p.created_by, p.created_at, p.updated_by, p.updated_at"
)


def _plan(r: Record) -> PlanRow:
    return PlanRow(
        r["specialist_id"],
        r["quarter"],
        r["status"],
        orjson.loads(r["goals"]),
        r["notes"],
        r["origin"],
        r["created_by"],
        r["created_at"],
        r["updated_by"],
        r["updated_at"],
        r.get("team_id"),
    )


async def get_plan(
    db: Db, specialist_id: str, quarter: str, *, for_update: bool = False
) -> PlanRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await db.fetchrow(
        f"SELECT {_PLAN_COLUMNS} FROM improvement_plans p "
        f"WHERE p.specialist_id = $1 AND p.quarter = $2{lock}",
        specialist_id,
        quarter,
    )
    return None if row is None else _plan(row)


async def upsert_plan(
    conn: Conn,
    specialist_id: str,
    quarter: str,
    status: str,
    goals: list[dict[str, Any]],
    notes: str,
    origin: str,
    by: str,
) -> PlanRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO improvement_plans AS p
            (specialist_id, quarter, status, goals, notes, origin, created_by, updated_by)
        VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $7)
        ON CONFLICT (specialist_id, quarter) DO UPDATE
            SET status = excluded.status, goals = excluded.goals, notes = excluded.notes,
                updated_by = excluded.updated_by, updated_at = now()
        RETURNING {_PLAN_COLUMNS}
        """,
        specialist_id,
        quarter,
        status,
        orjson.dumps(goals).decode(),
        notes,
        origin,
        by,
    )
    return _plan(row)


async def set_plan_status(
    conn: Conn, specialist_id: str, quarter: str, status: str, by: str
) -> PlanRow:
    row = await conn.fetchrow(
        f"""
        UPDATE improvement_plans p SET status = $3, updated_by = $4, updated_at = now()
        WHERE p.specialist_id = $1 AND p.quarter = $2
        RETURNING {_PLAN_COLUMNS}
        """,
        specialist_id,
        quarter,
        status,
        by,
    )
    return _plan(row)


async def propose_plans(
    conn: Conn,
    quarter: str,
    plans: Sequence[tuple[str, list[dict[str, Any]]]],
    origin: str,
    by: str,
) -> set[str]:
    """Draft plans for ``quarter``; an existing plan is never overwritten. Returns new ids."""
    if not plans:
        return set()
    ordered = sorted(plans, key=lambda p: p[0])
    rows = await conn.fetch(
        """
        INSERT INTO improvement_plans
            (specialist_id, quarter, status, goals, notes, origin, created_by, updated_by)
        SELECT i, $1, 'draft', g::jsonb, '', $4, $5, $5
        FROM unnest($2::text[], $3::text[]) AS u(i, g)
        ON CONFLICT (specialist_id, quarter) DO NOTHING
        RETURNING specialist_id
        """,
        quarter,
        [p[0] for p in ordered],
        [orjson.dumps(p[1]).decode() for p in ordered],
        origin,
        by,
    )
    return {r["specialist_id"] for r in rows}


async def list_plans(
    db: Db, quarter: str | None, team_ids: Collection[str] | None, status: str | None
) -> list[PlanRow]:
    """Plans (with the specialist's current team) filtered by quarter, teams and status."""
    rows = await db.fetch(
        f"""
        SELECT {_PLAN_COLUMNS}, s.team_id
        FROM improvement_plans p JOIN specialists s ON s.id = p.specialist_id
        WHERE ($1::text IS NULL OR p.quarter = $1)
          AND ($2::text[] IS NULL OR s.team_id = ANY($2::text[]))
          AND ($3::text IS NULL OR p.status = $3)
        ORDER BY p.quarter, p.specialist_id
        LIMIT 5000
        """,
        quarter,
        None if team_ids is None else sorted(team_ids),
        status,
    )
    return [_plan(r) for r in rows]


async def plan_statuses(db: Db, quarter: str, ids: Collection[str]) -> dict[str, str]:
    """The status of each specialist's plan for ``quarter`` (absent: no plan)."""
    if not ids:
        return {}
    rows = await db.fetch(
        """
        SELECT specialist_id, status FROM improvement_plans
        WHERE quarter = $1 AND specialist_id = ANY($2::text[])
        """,
        quarter,
        sorted(set(ids)),
    )
    return {r["specialist_id"]: r["status"] for r in rows}
