"""The reminder scan: reads the appraisal cycle's state, records the reminders due, wakes notify.

Runs in every scoring process, every ``KPI_REMINDER_SCAN_SECONDS``; an advisory lock lets one
of them scan at a time, and each reminder's key (its repeat period included) makes recording it
again a no-op, so replicas and restarts never double a reminder.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from prometheus_client import Counter

from services.scoring import queries
from services.scoring.appraisal.domain import Goal, goal_progress, measurement_window
from services.scoring.appraisal.reminders import (
    UNCLOSED_PLAN_STATUSES,
    FinalisedQuarter,
    GoalState,
    PlanState,
    ReminderPolicy,
    due_reminders,
    goal_window,
    local_day,
)
from services.scoring.config import ScoringConfig
from services.scoring.db import Conn, raw_connection
from services.scoring.kpi.lines import KpiLine
from services.scoring.scanner import PeriodicScan
from shared.db import session_scope
from shared.reminders import NewReminder, record_reminders
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

# One scan at a time across scoring processes ("kpi_remi").
SCAN_LOCK_KEY: Final = 0x6B70695F72656D69

REMINDERS_RECORDED = Counter(
    "kpi_scoring_reminders_recorded_total",
    "Appraisal-cycle reminders recorded for notify, by kind",
    ["kind"],
)

_FINALISED = """
    SELECT DISTINCT ON (a.specialist_id) a.specialist_id, a.quarter, a.finalized_at, s.team_id,
        coalesce((SELECT array_agg(m.id ORDER BY m.id) FROM feedback_meetings m
                  WHERE m.specialist_id = a.specialist_id AND m.quarter = a.quarter),
                 '{}') AS meeting_ids,
        coalesce((SELECT array_agg(m.status ORDER BY m.id) FROM feedback_meetings m
                  WHERE m.specialist_id = a.specialist_id AND m.quarter = a.quarter),
                 '{}') AS meeting_statuses
    FROM appraisal_snapshots a JOIN specialists s ON s.id = a.specialist_id
    WHERE s.team_id IS NOT NULL
    ORDER BY a.specialist_id, a.quarter DESC
"""

_PLANS = """
    SELECT p.specialist_id, p.quarter, p.status, p.goals::text AS goals, s.team_id
    FROM improvement_plans p JOIN specialists s ON s.id = p.specialist_id
    WHERE s.team_id IS NOT NULL AND p.status = ANY($1::text[])
    ORDER BY p.specialist_id, p.quarter
"""


async def finalised_quarters(conn: Conn) -> list[FinalisedQuarter]:
    """Each specialist's (with a team) latest finalised quarter and that quarter's meetings."""
    rows = await conn.fetch(_FINALISED)
    return [
        FinalisedQuarter(
            r["specialist_id"],
            r["team_id"],
            r["quarter"],
            r["finalized_at"],
            tuple(zip(r["meeting_ids"], r["meeting_statuses"], strict=True)),
        )
        for r in rows
    ]


async def unclosed_plans(
    conn: Conn, today: dt.date, policy: ReminderPolicy, lines: Mapping[str, KpiLine]
) -> list[PlanState]:
    """Plans not achieved or missed, their goals due soon measured on live KPIs."""
    rows = await conn.fetch(_PLANS, list(UNCLOSED_PLAN_STATUSES))
    lo, hi = goal_window(today, policy)
    parsed: list[tuple[Any, list[Goal]]] = []
    for r in rows:
        try:
            goals = [Goal.from_json(g) for g in orjson.loads(r["goals"])]
        except (ValueError, KeyError, TypeError) as exc:
            # One unreadable plan must not stop everyone else's reminders.
            logger.warning(
                "reminders: plan %r %s has unreadable goals (%s); skipped",
                r["specialist_id"],
                r["quarter"],
                exc,
            )
            continue
        parsed.append((r, goals))
    windows = {
        (r["specialist_id"], r["quarter"], g): measurement_window(r["quarter"], g, today)
        for r, goals in parsed
        for g in goals
        if lo <= g.due <= hi and g.kpi in lines
    }
    sums = await queries.many_window_sums(
        conn, {(sid, a, b) for (sid, _, _), (a, b) in windows.items()}
    )
    plans: list[PlanState] = []
    for r, goals in parsed:
        states: list[GoalState] = []
        for g in goals:
            window = windows.get((r["specialist_id"], r["quarter"], g))
            if window is None:
                states.append(GoalState(g.kpi, g.target, g.due))
                continue
            num, den = sums[(r["specialist_id"], *window)].get(g.kpi, (0.0, 0))
            progress = goal_progress(g, num, den, lines[g.kpi], today, window)
            states.append(GoalState(g.kpi, g.target, g.due, progress.status, progress.value))
        plans.append(
            PlanState(r["specialist_id"], r["team_id"], r["quarter"], r["status"], tuple(states))
        )
    return plans


async def scan(
    conn: Conn,
    now: dt.datetime,
    tz: dt.tzinfo,
    lines: Mapping[str, KpiLine],
    policy: ReminderPolicy,
) -> list[NewReminder] | None:
    """Record the reminders due at ``now``; returns the new ones, None when another process
    holds the scan (it records the same)."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SCAN_LOCK_KEY):
        return None
    today = local_day(now, tz)
    quarters = await finalised_quarters(conn)
    plans = await unclosed_plans(conn, today, policy, lines)
    due = due_reminders(quarters, plans, now, tz, policy)
    return await record_reminders(conn, due, now)


class ReminderScanner(PeriodicScan[ReminderPolicy]):
    """The periodic reminder scan (see :class:`PeriodicScan`)."""

    what = "reminders"

    async def scan_once(self) -> int | None:
        """One scan in one transaction; the count of new reminders (None: another scans)."""
        async with session_scope(self._sm) as session:
            conn = await raw_connection(session)
            recorded = await scan(conn, self._clock(), self._tz, self._lines, self.rule)
        if recorded is None:
            return None
        # Counted once committed.
        for reminder in recorded:
            REMINDERS_RECORDED.labels(reminder.kind).inc()
        if recorded:
            self.recorded += len(recorded)
            logger.info(
                "reminders: %d appraisal-cycle reminder(s) recorded for notify", len(recorded)
            )
        return len(recorded)


def start_reminders(
    runtime: Runtime, config: ScoringConfig, clock: Callable[[], dt.datetime]
) -> ReminderScanner | None:
    """Run the reminder scan as a runtime-owned task (kept, stopped and awaited on shutdown)."""
    policy = ReminderPolicy.from_settings(runtime.settings)
    if not policy.enabled:
        logger.info("reminders: off (KPI_REMINDERS_ENABLED=false)")
        return None
    scanner = ReminderScanner(
        runtime.sessionmaker,
        config,
        policy,
        clock=clock,
        interval=runtime.settings.reminder_scan_seconds,
    )
    runtime.spawn(scanner.run(), "scoring-reminders")
    runtime.stoppers.append(scanner.stop)
    return scanner
