"""Appraisal-cycle reminders: the `cycle_reminders` table scoring fills and notify relays.

Scoring decides which reminders are due (a meeting not held after finalisation, plan goals
due, plans overdue) and records each one under a ``key`` that names the repeat period it
belongs to, so recording it again (another scan, another replica) adds nothing. Notify turns
each unrelayed row into deliveries and sets ``relayed_at`` in the same transaction.

The functions take the driver connection of the caller's transaction (asyncpg, untyped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import orjson

MEETING_NOT_HELD: Final = "meeting_not_held"
GOAL_DUE: Final = "goal_due"
PLAN_OVERDUE: Final = "plan_overdue"
KINDS: Final = (MEETING_NOT_HELD, GOAL_DUE, PLAN_OVERDUE)
ReminderKind: TypeAlias = Literal["meeting_not_held", "goal_due", "plan_overdue"]

# pg_notify channel: notify relays at once instead of at its next period.
NOTIFY_CHANNEL: Final = "kpi_cycle_reminders"

# asyncpg has no type stubs; callers pass the raw connection of their transaction.
Raw: TypeAlias = Any


def reminder_key(kind: str, specialist_id: str, quarter: str, *parts: object) -> str:
    """The unique key of one reminder: a JSON array, so no id can run into the next part."""
    return orjson.dumps([kind, specialist_id, quarter, *[str(p) for p in parts]]).decode()


@dataclass(frozen=True)
class NewReminder:
    """A reminder due now, as scoring's rules decide it.

    ``quarter`` is the appraisal quarter (meeting_not_held) or the plan's quarter (goal_due,
    plan_overdue); ``due`` the local date the step was due by; ``subject`` what the message
    says about it (JSON-able).
    """

    key: str
    kind: ReminderKind
    specialist_id: str
    team_id: str | None
    quarter: str
    due: dt.date | None
    subject: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reminder:
    """A stored reminder."""

    id: int
    key: str
    kind: ReminderKind
    specialist_id: str
    team_id: str | None
    quarter: str
    due: dt.date | None
    subject: Mapping[str, Any]
    created_at: dt.datetime
    relayed_at: dt.datetime | None


_COLUMNS: Final = (
    "id, key, kind, specialist_id, team_id, quarter, due, subject, created_at, relayed_at"
)


def _reminder(row: Any) -> Reminder:
    subject = row["subject"]
    if isinstance(subject, str | bytes):
        subject = orjson.loads(subject)
    return Reminder(
        id=int(row["id"]),
        key=row["key"],
        kind=row["kind"],
        specialist_id=row["specialist_id"],
        team_id=row["team_id"],
        quarter=row["quarter"],
        due=row["due"],
        subject=subject or {},
        created_at=row["created_at"],
        relayed_at=row["relayed_at"],
    )


async def record_reminders(
    conn: Raw, reminders: Sequence[NewReminder], at: dt.datetime
) -> list[NewReminder]:
    """Insert the reminders whose key is new (ON CONFLICT DO NOTHING) and return those; wakes
    notify when there are any. Keys are inserted in order, so two writers of the same keys
    wait on each other instead of deadlocking."""
    if not reminders:
        return []
    unique = {r.key: r for r in reminders}
    ordered = [unique[k] for k in sorted(unique)]
    rows = await conn.fetch(
        """
        INSERT INTO cycle_reminders
            (key, kind, specialist_id, team_id, quarter, due, subject, created_at)
        SELECT k, kd, s, t, q, d, j::jsonb, $8
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[],
                    $7::text[]) WITH ORDINALITY AS u(k, kd, s, t, q, d, j, n)
        ORDER BY n
        ON CONFLICT (key) DO NOTHING
        RETURNING key
        """,
        [r.key for r in ordered],
        [r.kind for r in ordered],
        [r.specialist_id for r in ordered],
        [r.team_id for r in ordered],
        [r.quarter for r in ordered],
        [r.due for r in ordered],
        [orjson.dumps(dict(r.subject)).decode() for r in ordered],
        at,
    )
    if rows:
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(len(rows)))
    return [unique[r["key"]] for r in rows]


async def claim_unrelayed(conn: Raw, limit: int = 100) -> list[Reminder]:
    """Reminders not turned into deliveries yet, oldest first, locked until commit.

    SKIP LOCKED lets several notify replicas relay without announcing one reminder twice.
    """
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM cycle_reminders
        WHERE relayed_at IS NULL
        ORDER BY id LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [_reminder(r) for r in rows]


async def mark_relayed(conn: Raw, ids: Sequence[int], at: dt.datetime) -> None:
    if ids:
        await conn.execute(
            "UPDATE cycle_reminders SET relayed_at = $2 WHERE id = ANY($1::bigint[])",
            list(ids),
            at,
        )


async def list_reminders(conn: Raw, limit: int = 1000) -> list[Reminder]:
    """Every stored reminder, oldest first (tools and tests)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM cycle_reminders ORDER BY id LIMIT $1", limit)
    return [_reminder(r) for r in rows]
