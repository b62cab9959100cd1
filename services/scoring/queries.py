"""Read-side SQL of the scoring API: window sums from kpi_daily, daily series, facts, directory.

The API talks to PostgreSQL through its own small asyncpg pool (``ReadDb``): each read is one
prepared statement in autocommit, i.e. one round trip, which is what keeps KPI queries cheap
enough for dashboards polling many specialists (see bench/bench_queries.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

Sums = dict[str, tuple[float, int]]
T = TypeVar("T")

# Errors that mean "this pooled connection is dead" (e.g. PostgreSQL restarted): reads are
# idempotent, so one retry on a fresh connection heals without surfacing a 500.
_STALE = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The libpq-style URL asyncpg wants from the SQLAlchemy ``postgresql+asyncpg://`` one."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


class ReadDb:
    """A lazily-connecting asyncpg pool for the API's statements (created in lifespan)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def create(cls, database_url: str, max_size: int = 10) -> ReadDb:
        # min_size=0: starting the service must not need the database (readiness reports it).
        pool = await asyncpg.create_pool(
            asyncpg_dsn(database_url),
            min_size=0,
            max_size=max_size,
            command_timeout=30,
            server_settings={"application_name": "scoring-api"},
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except _STALE as exc:
            logger.warning("read failed on a stale connection (%s); retrying once", exc)
            return await op()

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return await self._retry(lambda: self.pool.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._retry(lambda: self.pool.fetchrow(query, *args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """One connection in one transaction, committed when the block succeeds."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn


@dataclass(frozen=True)
class SpecialistRow:
    id: str
    name: str | None
    team_id: str | None

    @classmethod
    def of(cls, record: Any) -> SpecialistRow:
        """From a record with ``id, name, team_id`` columns."""
        return cls(record["id"], record["name"], record["team_id"])


@dataclass(frozen=True)
class TeamRow:
    id: str
    name: str
    supervisor: str | None

    @classmethod
    def of(cls, record: Any) -> TeamRow:
        """From a record with ``id, name, supervisor`` columns."""
        return cls(record["id"], record["name"], record["supervisor"])


@dataclass
class SpecialistSums:
    """A specialist's directory row plus per-metric window sums (num, den)."""

    specialist: SpecialistRow
    sums: Sums = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSums:
    """One specialist's sums of one metric over a window (0/0 when no buckets)."""

    specialist: SpecialistRow
    num: float
    den: int


def sums_by_specialist(rows: Iterable[Any]) -> dict[str, SpecialistSums]:
    """Fold ``id, name, team_id, metric, num, den`` rows into each specialist's sums.

    Rows with a NULL ``id`` (an outer join that found no specialist) are skipped, and a NULL
    ``metric`` (a specialist without buckets) still yields the specialist with empty sums.
    """
    found: dict[str, SpecialistSums] = {}
    for row in rows:
        sid = row["id"]
        if sid is None:
            continue
        member = found.get(sid)
        if member is None:
            member = found[sid] = SpecialistSums(SpecialistRow.of(row))
        if row["metric"] is not None:
            member.sums[row["metric"]] = (float(row["num"]), int(row["den"]))
    return found


async def fetch_for_teams(
    db: ReadDb, every: str, only: str, team_ids: Collection[str] | None, *args: Any
) -> list[Any]:
    """``every`` with ``args``, or (``team_ids`` given) ``only`` with the sorted ids appended."""
    if team_ids is None:
        return await db.fetch(every, *args)
    return await db.fetch(only, *args, sorted(team_ids))


@dataclass(frozen=True)
class FactRow:
    day: dt.date
    source: str
    num: float
    den: int


# The specialist's directory row and its window sums in one round trip: the LATERAL
# aggregate walks the kpi_daily primary key (specialist_id, day, metric) for the range.
_SPECIALIST_SUMS = """
    SELECT s.id, s.name, s.team_id, k.metric, k.num, k.den
    FROM specialists s
    LEFT JOIN LATERAL (
        SELECT d.metric, sum(d.num) AS num, sum(d.den) AS den
        FROM kpi_daily d
        WHERE d.specialist_id = s.id AND d.day BETWEEN $2 AND $3
        GROUP BY d.metric
    ) k ON true
    WHERE s.id = $1
"""


async def specialist_sums(
    db: ReadDb, specialist_id: str, start: dt.date, end: dt.date
) -> SpecialistSums | None:
    """Directory row and window sums of one specialist; None when the id is unknown."""
    rows = await db.fetch(_SPECIALIST_SUMS, specialist_id, start, end)
    return sums_by_specialist(rows).get(specialist_id)


# team_id is the team's own id, so member rows read like specialist rows (SpecialistRow.of).
_TEAM_SUMS = """
    SELECT t.id AS team_id, t.name AS team_name, t.supervisor,
           s.id, s.name, k.metric, k.num, k.den
    FROM teams t
    LEFT JOIN specialists s ON s.team_id = t.id
    LEFT JOIN LATERAL (
        SELECT d.metric, sum(d.num) AS num, sum(d.den) AS den
        FROM kpi_daily d
        WHERE d.specialist_id = s.id AND d.day BETWEEN $2 AND $3
        GROUP BY d.metric
    ) k ON true
    WHERE t.id = $1
    ORDER BY s.id, k.metric
"""


async def team_sums(
    db: ReadDb, team_id: str, start: dt.date, end: dt.date
) -> tuple[TeamRow, list[SpecialistSums]] | None:
    """The team row and each member's window sums (members sorted by id); None if unknown."""
    rows = await db.fetch(_TEAM_SUMS, team_id, start, end)
    if not rows:
        return None
    team = TeamRow(rows[0]["team_id"], rows[0]["team_name"], rows[0]["supervisor"])
    # A team without members yields one row with a NULL specialist id: no members.
    return team, list(sums_by_specialist(rows).values())


# Everyone: one hash aggregate over the day range beats a per-specialist walk.
_METRIC_SUMS_ALL = """
    SELECT s.id, s.name, s.team_id, coalesce(k.num, 0) AS num, coalesce(k.den, 0) AS den
    FROM specialists s
    LEFT JOIN (
        SELECT d.specialist_id, sum(d.num) AS num, sum(d.den) AS den
        FROM kpi_daily d
        WHERE d.metric = $1 AND d.day BETWEEN $2 AND $3
        GROUP BY d.specialist_id
    ) k ON k.specialist_id = s.id
"""

# A few teams: walk each member's primary-key range instead of the whole day range.
_METRIC_SUMS_TEAMS = """
    SELECT s.id, s.name, s.team_id, coalesce(k.num, 0) AS num, coalesce(k.den, 0) AS den
    FROM specialists s
    LEFT JOIN LATERAL (
        SELECT sum(d.num) AS num, sum(d.den) AS den
        FROM kpi_daily d
        WHERE d.specialist_id = s.id AND d.metric = $1 AND d.day BETWEEN $2 AND $3
    ) k ON true
    WHERE s.team_id = ANY($4::text[])
"""


async def metric_sums(
    db: ReadDb, metric: str, start: dt.date, end: dt.date, team_ids: Collection[str] | None
) -> list[MetricSums]:
    """One metric's window sums for every specialist (or those of ``team_ids``), 0/0 included."""
    rows = await fetch_for_teams(
        db, _METRIC_SUMS_ALL, _METRIC_SUMS_TEAMS, team_ids, metric, start, end
    )
    return [MetricSums(SpecialistRow.of(r), float(r["num"]), int(r["den"])) for r in rows]


# The specialist row comes back even without buckets (day IS NULL) so that one round trip
# answers both "does it exist / which team" and the series.
_DAILY = """
    SELECT s.id, s.name, s.team_id, d.day, d.num, d.den
    FROM specialists s
    LEFT JOIN kpi_daily d
        ON d.specialist_id = s.id AND d.metric = $2 AND d.day BETWEEN $3 AND $4
    WHERE s.id = $1
"""


async def daily_series(
    db: ReadDb, specialist_id: str, metric: str, start: dt.date, end: dt.date
) -> tuple[SpecialistRow, dict[dt.date, tuple[float, int]]] | None:
    """The specialist and its stored buckets by day (days without a row are absent)."""
    rows = await db.fetch(_DAILY, specialist_id, metric, start, end)
    if not rows:
        return None
    buckets = {r["day"]: (float(r["num"]), int(r["den"])) for r in rows if r["day"] is not None}
    return SpecialistRow.of(rows[0]), buckets


_FACTS_FIRST = """
    SELECT day, source, num, den FROM kpi_facts
    WHERE specialist_id = $1 AND metric = $2 AND day BETWEEN $3 AND $4
    ORDER BY day, source
    LIMIT $5
"""

# Keyset paging on the kpi_facts key (specialist_id, metric, day, source): the row-value
# comparison keeps every page one index range scan, however deep the cursor.
_FACTS_AFTER = """
    SELECT day, source, num, den FROM kpi_facts
    WHERE specialist_id = $1 AND metric = $2 AND day BETWEEN $3 AND $4
      AND (day, source) > ($6::date, $7::text)
    ORDER BY day, source
    LIMIT $5
"""


async def facts_page(
    db: ReadDb,
    specialist_id: str,
    metric: str,
    start: dt.date,
    end: dt.date,
    after: tuple[dt.date, str] | None,
    limit: int,
) -> list[FactRow]:
    """Up to ``limit`` facts ordered by (day, source), strictly after the ``after`` key."""
    if after is None:
        rows = await db.fetch(_FACTS_FIRST, specialist_id, metric, start, end, limit)
    else:
        rows = await db.fetch(_FACTS_AFTER, specialist_id, metric, start, end, limit, *after)
    return [FactRow(r["day"], r["source"], float(r["num"]), int(r["den"])) for r in rows]


# ---------------------------------------------------------------------------
# Directory
# ---------------------------------------------------------------------------


async def get_specialist(db: ReadDb, specialist_id: str) -> SpecialistRow | None:
    row = await db.fetchrow(
        "SELECT id, name, team_id FROM specialists WHERE id = $1", specialist_id
    )
    return None if row is None else SpecialistRow.of(row)


async def get_team(db: ReadDb | Any, team_id: str) -> TeamRow | None:
    """The team, or None; ``db`` may also be a connection inside a transaction."""
    row = await db.fetchrow("SELECT id, name, supervisor FROM teams WHERE id = $1", team_id)
    return None if row is None else TeamRow.of(row)


_TEAMS = "SELECT id, name, supervisor FROM teams ORDER BY id"
_TEAMS_LISTED = "SELECT id, name, supervisor FROM teams WHERE id = ANY($1::text[]) ORDER BY id"
_SPECIALISTS = "SELECT id, name, team_id FROM specialists ORDER BY id"
_SPECIALISTS_OF_TEAMS = (
    "SELECT id, name, team_id FROM specialists WHERE team_id = ANY($1::text[]) ORDER BY id"
)


async def list_teams(db: ReadDb, team_ids: Collection[str] | None) -> list[TeamRow]:
    """All teams (``team_ids`` None) or only those listed, sorted by id."""
    rows = await fetch_for_teams(db, _TEAMS, _TEAMS_LISTED, team_ids)
    return [TeamRow.of(r) for r in rows]


async def list_specialists(db: ReadDb, team_ids: Collection[str] | None) -> list[SpecialistRow]:
    """All specialists (``team_ids`` None) or the members of the listed teams, sorted by id."""
    rows = await fetch_for_teams(db, _SPECIALISTS, _SPECIALISTS_OF_TEAMS, team_ids)
    return [SpecialistRow.of(r) for r in rows]


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


async def upsert_team(conn: Any, team_id: str, name: str, supervisor: str | None) -> TeamRow:
    """Create or replace a team (inside the caller's transaction)."""
    return TeamRow.of(await conn.fetchrow(_UPSERT_TEAM, team_id, name, supervisor))


async def upsert_specialist(
    conn: Any, specialist_id: str, name: str | None, team_id: str | None
) -> SpecialistRow:
    """Create or replace a specialist's entry (inside the caller's transaction)."""
    return SpecialistRow.of(await conn.fetchrow(_UPSERT_SPECIALIST, specialist_id, name, team_id))
