"""Read-side SQL of scoring: window sums from kpi_daily, daily series, facts, the directory.

Every window sum is built by ``daily_sums``, the one aggregate over kpi_daily; the statements
around it only choose which specialists it runs for and how the rows are joined.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.scoring.db import Db, Record

Sums = dict[str, tuple[float, int]]
WindowKey = tuple[str, dt.date, dt.date]


def daily_sums(where: str, *, by: Sequence[str] = ("d.metric",)) -> str:
    """The window-sums aggregate: ``sum(num), sum(den)`` of the kpi_daily rows (alias ``d``)
    that ``where`` selects, one row per ``by`` (an empty ``by``: one row in total)."""
    group = ", ".join(by)
    head = f"{group}, " if by else ""
    tail = f" GROUP BY {group}" if by else ""
    return f"SELECT {head}sum(d.num) AS num, sum(d.den) AS den FROM kpi_daily d WHERE {where}{tail}"


def _pair(row: Record) -> tuple[float, int]:
    return float(row["num"]), int(row["den"])


@dataclass(frozen=True)
class SpecialistRow:
    id: str
    name: str | None
    team_id: str | None

    @classmethod
    def of(cls, record: Record) -> SpecialistRow:
        """From a record with ``id, name, team_id`` columns."""
        return cls(record["id"], record["name"], record["team_id"])


@dataclass(frozen=True)
class TeamRow:
    id: str
    name: str
    supervisor: str | None

    @classmethod
    def of(cls, record: Record) -> TeamRow:
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


@dataclass(frozen=True)
class FactRow:
    day: dt.date
    source: str
    num: float
    den: int


def sums_by_specialist(rows: Iterable[Record]) -> dict[str, SpecialistSums]:
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
            member.sums[row["metric"]] = _pair(row)
    return found


async def fetch_for_teams(
    db: Db, every: str, only: str, team_ids: Collection[str] | None, *args: Any
) -> list[Record]:
    """``every`` with ``args``, or (``team_ids`` given) ``only`` with the sorted ids appended."""
    if team_ids is None:
        return await db.fetch(every, *args)
    return await db.fetch(only, *args, sorted(team_ids))


# ---------------------------------------------------------------------------
# Window sums
# ---------------------------------------------------------------------------


def _members_with_sums(days: str, where: str) -> str:
    """The specialists ``where`` selects, each with its sums per metric over ``days``.

    The LATERAL aggregate walks each one's kpi_daily primary key (specialist_id, day, metric)
    for the range, so a few specialists cost a few index range scans.
    """
    return f"""
        SELECT s.id, s.name, s.team_id, k.metric, k.num, k.den
        FROM specialists s
        LEFT JOIN LATERAL (
            {daily_sums(f"d.specialist_id = s.id AND d.day BETWEEN {days}")}
        ) k ON true
        WHERE {where}
    """


# The specialist's directory row and its window sums in one round trip.
_SPECIALIST_SUMS = _members_with_sums("$2 AND $3", "s.id = $1")


async def specialist_sums(
    db: Db, specialist_id: str, start: dt.date, end: dt.date
) -> SpecialistSums | None:
    """Directory row and window sums of one specialist; None when the id is unknown."""
    rows = await db.fetch(_SPECIALIST_SUMS, specialist_id, start, end)
    return sums_by_specialist(rows).get(specialist_id)


# team_id is the team's own id, so member rows read like specialist rows (SpecialistRow.of).
_TEAM_SUMS = f"""
    SELECT t.id AS team_id, t.name AS team_name, t.supervisor,
           s.id, s.name, k.metric, k.num, k.den
    FROM teams t
    LEFT JOIN specialists s ON s.team_id = t.id
    LEFT JOIN LATERAL (
        {daily_sums("d.specialist_id = s.id AND d.day BETWEEN $2 AND $3")}
    ) k ON true
    WHERE t.id = $1
    ORDER BY s.id, k.metric
"""


async def team_sums(
    db: Db, team_id: str, start: dt.date, end: dt.date
) -> tuple[TeamRow, list[SpecialistSums]] | None:
    """The team row and each member's window sums (members sorted by id); None if unknown."""
    rows = await db.fetch(_TEAM_SUMS, team_id, start, end)
    if not rows:
        return None
    team = TeamRow(rows[0]["team_id"], rows[0]["team_name"], rows[0]["supervisor"])
    # A team without members yields one row with a NULL specialist id: no members.
    return team, list(sums_by_specialist(rows).values())


# Everyone: one hash aggregate over the day range beats a per-specialist walk.
_METRIC_SUMS_ALL = f"""
    SELECT s.id, s.name, s.team_id, coalesce(k.num, 0) AS num, coalesce(k.den, 0) AS den
    FROM specialists s
    LEFT JOIN (
        {daily_sums("d.metric = $1 AND d.day BETWEEN $2 AND $3", by=["d.specialist_id"])}
    ) k ON k.specialist_id = s.id
"""

# A few teams: walk each member's primary-key range instead of the whole day range.
_METRIC_SUMS_TEAMS = f"""
    SELECT s.id, s.name, s.team_id, coalesce(k.num, 0) AS num, coalesce(k.den, 0) AS den
    FROM specialists s
    LEFT JOIN LATERAL (
        {daily_sums("d.specialist_id = s.id AND d.metric = $1 AND d.day BETWEEN $2 AND $3", by=[])}
    ) k ON true
    WHERE s.team_id = ANY($4::text[])
"""


async def metric_sums(
    db: Db, metric: str, start: dt.date, end: dt.date, team_ids: Collection[str] | None
) -> list[MetricSums]:
    """One metric's window sums for every specialist (or those of ``team_ids``), 0/0 included."""
    rows = await fetch_for_teams(
        db, _METRIC_SUMS_ALL, _METRIC_SUMS_TEAMS, team_ids, metric, start, end
    )
    return [MetricSums(SpecialistRow.of(r), *_pair(r)) for r in rows]


# The overview's one statement: every visible specialist's window sums per metric.
_OVERVIEW_ALL = f"""
    SELECT s.id, s.name, s.team_id, k.metric, k.num, k.den
    FROM specialists s
    LEFT JOIN (
        {daily_sums("d.day BETWEEN $1 AND $2", by=["d.specialist_id", "d.metric"])}
    ) k ON k.specialist_id = s.id
"""
_OVERVIEW_TEAMS = _members_with_sums("$1 AND $2", "s.team_id = ANY($3::text[])")


async def overview_sums(
    db: Db, start: dt.date, end: dt.date, team_ids: Collection[str] | None
) -> list[SpecialistSums]:
    """Window sums of every specialist (``team_ids`` None) or of the listed teams' members."""
    rows = await fetch_for_teams(db, _OVERVIEW_ALL, _OVERVIEW_TEAMS, team_ids, start, end)
    found = sums_by_specialist(rows)
    return sorted(found.values(), key=lambda m: m.specialist.id)


_SUMS_OF = daily_sums(
    "d.specialist_id = ANY($1::text[]) AND d.day BETWEEN $2 AND $3",
    by=["d.specialist_id", "d.metric"],
)


async def window_sums(
    db: Db, specialist_ids: Iterable[str], start: dt.date, end: dt.date
) -> dict[str, Sums]:
    """(num, den) per KPI key of each given specialist over [start, end]; absent keys are 0/0."""
    ids = sorted(set(specialist_ids))
    out: dict[str, Sums] = {i: {} for i in ids}
    if not ids:
        return out
    for r in await db.fetch(_SUMS_OF, ids, start, end):
        out[r["specialist_id"]][r["metric"]] = _pair(r)
    return out


# Each (specialist, start, end) walks its own primary-key range.
_WINDOWS = f"""
    SELECT r.i AS specialist_id, r.s AS start, r.e AS end, k.metric, k.num, k.den
    FROM unnest($1::text[], $2::date[], $3::date[]) AS r(i, s, e)
    JOIN LATERAL (
        {daily_sums("d.specialist_id = r.i AND d.day BETWEEN r.s AND r.e")}
    ) k ON true
"""


async def many_window_sums(db: Db, requests: Collection[WindowKey]) -> dict[WindowKey, Sums]:
    """Sums for many (specialist, start, end) windows in one statement."""
    keys = sorted(set(requests))
    out: dict[WindowKey, Sums] = {k: {} for k in keys}
    if not keys:
        return out
    rows = await db.fetch(
        _WINDOWS, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
    )
    for r in rows:
        out[(r["specialist_id"], r["start"], r["end"])][r["metric"]] = _pair(r)
    return out


# Members in id order, keyset-paged: a big organisation streams in bounded memory.
_MEMBERS = """
    SELECT s.id, s.name, s.team_id FROM specialists s
    WHERE ($1::text[] IS NULL OR s.team_id = ANY($1::text[])) AND s.id > $2
    ORDER BY s.id
    LIMIT $3
"""


async def members_page(
    db: Db, team_ids: Collection[str] | None, after: str, limit: int
) -> list[SpecialistRow]:
    """Specialists of ``team_ids`` (None = everyone) with id > ``after``, sorted by id."""
    teams = None if team_ids is None else sorted(team_ids)
    rows = await db.fetch(_MEMBERS, teams, after, limit)
    return [SpecialistRow.of(r) for r in rows]


async def iter_members(
    db: Db, team_ids: Collection[str] | None, start: dt.date, end: dt.date, chunk: int = 500
) -> AsyncIterator[list[SpecialistSums]]:
    """Chunks of members with their window sums, in id order."""
    after = ""
    while True:
        page = await members_page(db, team_ids, after, chunk)
        if not page:
            return
        sums = await window_sums(db, [m.id for m in page], start, end)
        yield [SpecialistSums(m, sums[m.id]) for m in page]
        if len(page) < chunk:
            return
        after = page[-1].id


# ---------------------------------------------------------------------------
# Daily series and facts
# ---------------------------------------------------------------------------

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
    db: Db, specialist_id: str, metric: str, start: dt.date, end: dt.date
) -> tuple[SpecialistRow, dict[dt.date, tuple[float, int]]] | None:
    """The specialist and its stored buckets by day (days without a row are absent)."""
    rows = await db.fetch(_DAILY, specialist_id, metric, start, end)
    if not rows:
        return None
    buckets = {r["day"]: _pair(r) for r in rows if r["day"] is not None}
    return SpecialistRow.of(rows[0]), buckets


# The team's current members' buckets added per day, in one statement: the member ids go in
# as one array, so each member costs one range scan of the kpi_daily primary key. The team
# row comes back even without members or buckets (day IS NULL).
_TEAM_DAY_BUCKETS = daily_sums(
    "d.specialist_id = ANY(ARRAY(SELECT s.id FROM specialists s WHERE s.team_id = t.id))"
    " AND d.metric = $2 AND d.day BETWEEN $3 AND $4",
    by=["d.day"],
)
_TEAM_DAILY = f"""
    SELECT t.id, t.name, t.supervisor, k.day, k.num, k.den
    FROM teams t
    LEFT JOIN LATERAL ({_TEAM_DAY_BUCKETS}) k ON true
    WHERE t.id = $1
"""


async def team_daily_series(
    db: Db, team_id: str, metric: str, start: dt.date, end: dt.date
) -> tuple[TeamRow, dict[dt.date, tuple[float, int]]] | None:
    """The team and its current members' buckets pooled by day (sums of num and den)."""
    rows = await db.fetch(_TEAM_DAILY, team_id, metric, start, end)
    if not rows:
        return None
    buckets = {r["day"]: _pair(r) for r in rows if r["day"] is not None}
    return TeamRow.of(rows[0]), buckets


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
    db: Db,
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
    return [FactRow(r["day"], r["source"], *_pair(r)) for r in rows]


async def ledger_kept_from(db: Db) -> dt.date | None:
    """First day whose facts the ledger retention kept; None while all are kept."""
    row = await db.fetchrow("SELECT kept_from FROM ledger_retention")
    return None if row is None else row["kept_from"]


# ---------------------------------------------------------------------------
# Directory
# ---------------------------------------------------------------------------


async def get_specialist(db: Db, specialist_id: str) -> SpecialistRow | None:
    row = await db.fetchrow(
        "SELECT id, name, team_id FROM specialists WHERE id = $1", specialist_id
    )
    return None if row is None else SpecialistRow.of(row)


async def aliases_of(db: Db, specialist_id: str) -> dict[str, str]:
    """The specialist's helpdesk aliases, kind -> alias."""
    rows = await db.fetch(
        "SELECT kind, alias FROM specialist_aliases WHERE specialist_id = $1 ORDER BY kind",
        specialist_id,
    )
    return {r["kind"]: r["alias"] for r in rows}


async def get_team(db: Db, team_id: str) -> TeamRow | None:
    row = await db.fetchrow("SELECT id, name, supervisor FROM teams WHERE id = $1", team_id)
    return None if row is None else TeamRow.of(row)


async def specialist_teams(db: Db, specialist_ids: Collection[str]) -> dict[str, str | None]:
    """The team of each given specialist that is in the directory."""
    rows = await db.fetch(
        "SELECT id, team_id FROM specialists WHERE id = ANY($1::text[])", list(specialist_ids)
    )
    return {r["id"]: r["team_id"] for r in rows}


_TEAMS = "SELECT id, name, supervisor FROM teams ORDER BY id"
_TEAMS_LISTED = "SELECT id, name, supervisor FROM teams WHERE id = ANY($1::text[]) ORDER BY id"
_SPECIALISTS = "SELECT id, name, team_id FROM specialists ORDER BY id"
_SPECIALISTS_OF_TEAMS = (
    "SELECT id, name, team_id FROM specialists WHERE team_id = ANY($1::text[]) ORDER BY id"
)


async def list_teams(db: Db, team_ids: Collection[str] | None) -> list[TeamRow]:
    """All teams (``team_ids`` None) or only those listed, sorted by id."""
    rows = await fetch_for_teams(db, _TEAMS, _TEAMS_LISTED, team_ids)
    return [TeamRow.of(r) for r in rows]


async def list_specialists(db: Db, team_ids: Collection[str] | None) -> list[SpecialistRow]:
    """All specialists (``team_ids`` None) or the members of the listed teams, sorted by id."""
    rows = await fetch_for_teams(db, _SPECIALISTS, _SPECIALISTS_OF_TEAMS, team_ids)
    return [SpecialistRow.of(r) for r in rows]
