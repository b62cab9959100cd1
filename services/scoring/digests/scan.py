"""The digest scan: once a period's digest is due, builds and records it for every team with
members (once per team and period), which wakes notify.

Runs in every scoring process, every ``KPI_DIGEST_SCAN_SECONDS``; an advisory lock lets one of
them scan at a time, and the (team, period) key makes recording a digest again a no-op, so
replicas, restarts and an admin's send never double one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Final
from zoneinfo import ZoneInfo

import orjson
from prometheus_client import Counter

from services.scoring import queries
from services.scoring.appraisal.reminders import UNCLOSED_PLAN_STATUSES
from services.scoring.config import ScoringConfig
from services.scoring.db import Conn, Db, raw_connection
from services.scoring.digests.build import MemberSums, UnclosedPlan, build_digest
from services.scoring.digests.periods import DigestSchedule, Period, due_period, previous
from services.scoring.kpi.lines import KpiLine
from services.scoring.scanner import PeriodicScan
from shared.db import session_scope
from shared.digests import Digest, record_digest, teams_without_digest
from shared.runtime import Runtime
from shared.webhooks import DigestContent

logger = logging.getLogger(__name__)

# One scan at a time across scoring processes ("kpi_dige").
SCAN_LOCK_KEY: Final = 0x6B70695F64696765

DIGESTS_RECORDED = Counter(
    "kpi_scoring_digests_recorded_total",
    "Team digests recorded for notify, by period kind",
    ["kind"],
)

_PLANS = """
    SELECT p.specialist_id, s.name, p.quarter, p.status, p.goals::text AS goals
    FROM improvement_plans p JOIN specialists s ON s.id = p.specialist_id
    WHERE s.team_id = $1 AND p.status = ANY($2::text[])
    ORDER BY p.specialist_id, p.quarter
"""


def _goals(raw: str) -> tuple[tuple[str, float, dt.date], ...]:
    goals = orjson.loads(raw)
    return tuple(
        (str(g["kpi"]), float(g["target"]), dt.date.fromisoformat(str(g["due"]))) for g in goals
    )


async def unclosed_plans(db: Db, team_id: str) -> list[UnclosedPlan]:
    """The team's members' plans not achieved or missed yet."""
    out: list[UnclosedPlan] = []
    for r in await db.fetch(_PLANS, team_id, list(UNCLOSED_PLAN_STATUSES)):
        try:
            goals = _goals(r["goals"])
        except (ValueError, KeyError, TypeError) as exc:
            # One unreadable plan must not stop the team's digest.
            logger.warning(
                "digests: plan %r %s has unreadable goals (%s); left out",
                r["specialist_id"],
                r["quarter"],
                exc,
            )
            continue
        out.append(UnclosedPlan(r["specialist_id"], r["name"], r["quarter"], r["status"], goals))
    return out


async def team_digest(
    db: Db, team_id: str, period: Period, timezone: str, lines: Mapping[str, KpiLine]
) -> DigestContent | None:
    """A team's digest of ``period`` from the database as it is now; None for an unknown team."""
    before = previous(period)
    found = await queries.team_sums(db, team_id, period.start, period.end)
    if found is None:
        return None
    team, now = found
    earlier = await queries.team_sums(db, team_id, before.start, before.end)
    old = {m.specialist.id: m.sums for m in earlier[1]} if earlier is not None else {}
    members = [
        MemberSums(m.specialist.id, m.specialist.name, m.sums, old.get(m.specialist.id, {}))
        for m in now
    ]
    return build_digest(
        team_id=team.id,
        team_name=team.name,
        timezone=timezone,
        period=period,
        members=members,
        plans=await unclosed_plans(db, team_id),
        lines=lines,
    )


async def scan(
    conn: Conn,
    now: dt.datetime,
    tz: ZoneInfo,
    lines: Mapping[str, KpiLine],
    schedule: DigestSchedule,
) -> list[Digest] | None:
    """Record the digests due at ``now``; returns the new ones, None when another process
    holds the scan (it records the same)."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SCAN_LOCK_KEY):
        return None
    period = due_period(now, schedule, tz)
    if period is None:
        return []
    recorded: list[Digest] = []
    for team_id in await teams_without_digest(conn, period.name):
        content = await team_digest(conn, team_id, period, tz.key, lines)
        if content is None:
            continue
        digest = await record_digest(conn, content, now)
        if digest is not None:
            recorded.append(digest)
    return recorded


class DigestScanner(PeriodicScan[DigestSchedule]):
    """The periodic digest scan (see :class:`PeriodicScan`)."""

    what = "digests"

    async def scan_once(self) -> int | None:
        """One scan in one transaction; the count of new digests (None: another scans)."""
        async with session_scope(self._sm) as session:
            conn = await raw_connection(session)
            recorded = await scan(conn, self._clock(), self._tz, self._lines, self.rule)
        if recorded is None:
            return None
        # Counted once committed.
        for digest in recorded:
            DIGESTS_RECORDED.labels(digest.content.period.kind).inc()
        if recorded:
            self.recorded += len(recorded)
            logger.info(
                "digests: %d team digest(s) of %s recorded for notify",
                len(recorded),
                recorded[0].period,
            )
        return len(recorded)


def start_digests(
    runtime: Runtime, config: ScoringConfig, clock: Callable[[], dt.datetime]
) -> DigestScanner | None:
    """Run the digest scan as a runtime-owned task (kept, stopped and awaited on shutdown)."""
    schedule = DigestSchedule.from_settings(runtime.settings)
    if not schedule.enabled:
        logger.info("digests: off (KPI_DIGEST_SCHEDULE=off)")
        return None
    scanner = DigestScanner(
        runtime.sessionmaker,
        config,
        schedule,
        clock=clock,
        interval=runtime.settings.digest_scan_seconds,
    )
    runtime.spawn(scanner.run(), "scoring-digests")
    runtime.stoppers.append(scanner.stop)
    return scanner
