"""The delivery outbox's writes: grouped enqueueing, leased claims, attempts and resends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.notify.repository import Raw, from_json, jdump


async def append_to_open_group(
    conn: Raw,
    group_key: str,
    now: dt.datetime,
    alert_ids: Sequence[str],
    items: Sequence[dict[str, Any]],
) -> bool:
    """Add items to a still-waiting delivery of the group; False when none is open.

    FOR UPDATE re-checks the row after waiting, so a row a sender just claimed is not
    extended (its items would never be sent).
    """
    row_id = await conn.fetchval(
        """
        SELECT id FROM deliveries
        WHERE group_key = $1 AND status = 'pending' AND attempts = 0 AND next_attempt_at > $2
          AND NOT (alert_ids && $3::varchar[])
        ORDER BY id DESC LIMIT 1
        FOR UPDATE
        """,
        group_key,
        now,
        list(alert_ids),
    )
    if row_id is None:
        return False
    await conn.execute(
        "UPDATE deliveries SET items = items || $2::jsonb, alert_ids = alert_ids || $3::varchar[] "
        "WHERE id = $1",
        row_id,
        jdump(list(items)),
        list(alert_ids),
    )
    return True


async def last_group_created(conn: Raw, group_key: str, since: dt.datetime) -> dt.datetime | None:
    value: dt.datetime | None = await conn.fetchval(
        "SELECT max(created_at) FROM deliveries WHERE group_key = $1 AND created_at > $2",
        group_key,
        since,
    )
    return value


async def insert_delivery(
    conn: Raw,
    *,
    key: str,
    channel_id: str,
    group_key: str,
    team_id: str | None,
    alert_ids: Sequence[str],
    items: Sequence[dict[str, Any]],
    now: dt.datetime,
    not_before: dt.datetime,
) -> bool:
    status: str = await conn.execute(
        """
        INSERT INTO deliveries (delivery_key, channel_id, group_key, team_id, alert_ids, items,
                                status, attempts, next_attempt_at, created_at)
        VALUES ($1, $2, $3, $4, $5::text[], $6::jsonb, 'pending', 0, $7, $8)
        ON CONFLICT (delivery_key) DO NOTHING
        """,
        key,
        channel_id,
        group_key,
        team_id,
        list(alert_ids),
        jdump(list(items)),
        not_before,
        now,
    )
    return status.endswith(" 1")


@dataclass(frozen=True)
class Claimed:
    id: int
    delivery_key: str
    channel_id: str
    team_id: str | None
    items: list[dict[str, Any]]
    attempts: int
    lease_until: dt.datetime
    # Where the current retry budget started and how many attempts it has seen (this one
    # included): creation, or the last resend.
    budget_from: dt.datetime
    budget_attempts: int


async def claim_due(
    conn: Raw,
    now: dt.datetime,
    lease_until: dt.datetime,
    limit: int,
    in_flight: dict[str, int],
    per_channel: int,
) -> list[Claimed]:
    """Claim due deliveries (and those whose sender's lease expired) for this worker.

    At most `per_channel` per channel including what this worker already sends, so a slow
    channel's backlog stays in the table (claimable by others) instead of queueing here.
    """
    rows = await conn.fetch(
        """
        WITH cand AS (
            SELECT id, channel_id, next_attempt_at FROM deliveries
            WHERE (status = 'pending' AND next_attempt_at <= $1)
               OR (status = 'sending' AND lease_until <= $1)
            ORDER BY next_attempt_at, id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ), ranked AS (
            SELECT c.id, c.channel_id,
                   row_number() OVER (PARTITION BY c.channel_id
                                      ORDER BY c.next_attempt_at, c.id) AS rn
            FROM cand c
        )
        UPDATE deliveries d SET status = 'sending', lease_until = $2, attempts = d.attempts + 1
        FROM ranked r
        WHERE d.id = r.id
          AND r.rn <= $4 - COALESCE(
                (SELECT f.n FROM unnest($5::text[], $6::int[]) AS f(c, n)
                 WHERE f.c = r.channel_id), 0)
        RETURNING d.id, d.delivery_key, d.channel_id, d.team_id, d.items, d.attempts,
                  d.lease_until, COALESCE(d.resent_at, d.created_at) AS budget_from,
                  d.attempts - d.attempts_before_resend AS budget_attempts
        """,
        now,
        lease_until,
        limit,
        per_channel,
        list(in_flight),
        list(in_flight.values()),
    )
    return [
        Claimed(
            r["id"],
            r["delivery_key"],
            r["channel_id"],
            r["team_id"],
            from_json(r["items"]),
            r["attempts"],
            r["lease_until"],
            r["budget_from"],
            r["budget_attempts"],
        )
        for r in sorted(rows, key=lambda r: r["id"])
    ]


async def finish_attempt(
    conn: Raw,
    claimed: Claimed,
    *,
    at: dt.datetime,
    status: str,
    next_attempt_at: dt.datetime | None,
    outcome: str,
    http_status: int | None,
    error: str | None,
    duration_ms: float,
    worker: str,
) -> bool:
    """Record the attempt and move the delivery on, only if our lease still holds."""
    updated: str = await conn.execute(
        """
        UPDATE deliveries SET status = $3::text, next_attempt_at = COALESCE($4, next_attempt_at),
            lease_until = NULL, last_error = $5,
            sent_at = CASE WHEN $3::text = 'sent' THEN $6 ELSE sent_at END
        WHERE id = $1 AND status = 'sending' AND lease_until = $2
        """,
        claimed.id,
        claimed.lease_until,
        status,
        next_attempt_at,
        error,
        at,
    )
    await conn.execute(
        """
        INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, http_status, error,
                                       duration_ms, worker)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        claimed.id,
        claimed.attempts,
        at,
        outcome,
        http_status,
        error,
        duration_ms,
        worker,
    )
    return updated.endswith(" 1")


async def resend_delivery(conn: Raw, delivery_id: int, who: str, now: dt.datetime) -> bool:
    """A failed delivery back to pending, due now, with a fresh budget; False if not failed.

    The row (and so its delivery key) stays the same: receivers drop a copy they already
    processed, and every earlier attempt stays in delivery_attempts.
    """
    status: str = await conn.execute(
        """
        UPDATE deliveries SET status = 'pending', next_attempt_at = $3, lease_until = NULL,
            resent_at = $3, resent_by = $2, resends = resends + 1,
            attempts_before_resend = attempts
        WHERE id = $1 AND status = 'failed'
        """,
        delivery_id,
        who,
        now,
    )
    return status.endswith(" 1")
