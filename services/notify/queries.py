"""Notify's read-only SQL: transitions for SSE replay, alerts, channels, silences, deliveries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from services.notify.repository import CHANNEL_COLS, ChannelRecord, Raw, channel_record, from_json
from services.notify.rules import SilenceScope


async def newest_event_id(conn: Raw) -> int:
    """Id of the latest transition (0 when there is none): the stream's starting cursor."""
    value: int = await conn.fetchval("SELECT coalesce(max(id), 0) FROM alert_events")
    return value


async def events_between(
    conn: Raw, after: int, upto: int, team_ids: Sequence[str] | None, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    """(id, data) of transitions with after < id <= upto, oldest first; None = all teams."""
    rows = await conn.fetch(
        """
        SELECT id, data FROM alert_events
        WHERE id > $1 AND id <= $2 AND ($3::text[] IS NULL OR team_id = ANY($3::text[]))
        ORDER BY id
        LIMIT $4
        """,
        after,
        upto,
        None if team_ids is None else list(team_ids),
        limit,
    )
    return [(r["id"], from_json(r["data"])) for r in rows]


async def active_silences(conn: Raw, now: dt.datetime) -> list[SilenceScope]:
    rows = await conn.fetch(
        "SELECT specialist_id, kpi, team_id FROM silences WHERE until > $1", now
    )
    return [SilenceScope(r["specialist_id"], r["kpi"], r["team_id"]) for r in rows]


async def directory(conn: Raw, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """specialist id -> (team_id, name) for the known ones."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, team_id, name FROM specialists WHERE id = ANY($1::text[])", list(set(ids))
    )
    return {r["id"]: (r["team_id"], r["name"]) for r in rows}


async def enabled_channels(conn: Raw) -> list[ChannelRecord]:
    rows = await conn.fetch(f"SELECT {CHANNEL_COLS} FROM channels WHERE enabled ORDER BY id")
    return [channel_record(r) for r in rows]


async def channels_by_id(conn: Raw, ids: Sequence[str]) -> dict[str, ChannelRecord]:
    rows = await conn.fetch(
        f"SELECT {CHANNEL_COLS} FROM channels WHERE id = ANY($1::text[])", list(set(ids))
    )
    return {r["id"]: channel_record(r) for r in rows}


async def list_channels(conn: Raw, team_ids: Sequence[str] | None) -> list[ChannelRecord]:
    if team_ids is None:
        rows = await conn.fetch(f"SELECT {CHANNEL_COLS} FROM channels ORDER BY created_at, id")
    else:
        rows = await conn.fetch(
            f"SELECT {CHANNEL_COLS} FROM channels WHERE team_id = ANY($1::text[]) "
            "ORDER BY created_at, id",
            list(team_ids),
        )
    return [channel_record(r) for r in rows]


async def get_channel(conn: Raw, channel_id: str) -> ChannelRecord | None:
    row = await conn.fetchrow(f"SELECT {CHANNEL_COLS} FROM channels WHERE id = $1", channel_id)
    return None if row is None else channel_record(row)


async def team_exists(conn: Raw, team_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM teams WHERE id = $1", team_id))


async def delivery_counts(conn: Raw) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


# Channel name and kind only: the channel's config holds its secrets.
_DELIVERY_COLS = """
    d.id, d.delivery_key, d.status, d.channel_id, c.name AS channel_name,
    c.kind AS channel_kind, d.team_id, d.alert_ids, d.items, d.attempts, d.created_at,
    d.next_attempt_at, d.sent_at, d.last_error, d.resent_at, d.resent_by, d.resends,
    COALESCE(d.resent_at, d.created_at) AS budget_from,
    (SELECT max(a.at) FROM delivery_attempts a WHERE a.delivery_id = d.id) AS last_attempt_at
"""


def _delivery(r: Any) -> dict[str, Any]:
    out = dict(r)
    out["items"] = from_json(out["items"])
    return out


async def list_deliveries(
    conn: Raw,
    *,
    status: str | None,
    team_ids: Sequence[str] | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Deliveries newest first, below `before_id` (the cursor); `team_ids` None = all teams."""
    rows = await conn.fetch(
        f"""
        SELECT {_DELIVERY_COLS}
        FROM deliveries d LEFT JOIN channels c ON c.id = d.channel_id
        WHERE ($1::text IS NULL OR d.status = $1)
          AND ($2::text[] IS NULL OR d.team_id = ANY($2::text[]))
          AND ($3::bigint IS NULL OR d.id < $3)
        ORDER BY d.id DESC
        LIMIT $4
        """,
        status,
        None if team_ids is None else list(team_ids),
        before_id,
        limit,
    )
    return [_delivery(r) for r in rows]


async def get_delivery(conn: Raw, delivery_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""
        SELECT {_DELIVERY_COLS}
        FROM deliveries d LEFT JOIN channels c ON c.id = d.channel_id
        WHERE d.id = $1
        """
        + (" FOR UPDATE OF d" if lock else ""),
        delivery_id,
    )
    return None if row is None else _delivery(row)


async def attempt_logs(conn: Raw, delivery_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Every recorded attempt of the given deliveries, oldest first, per delivery id."""
    rows = await conn.fetch(
        """
        SELECT delivery_id, attempt, at, outcome, http_status, error, duration_ms
        FROM delivery_attempts WHERE delivery_id = ANY($1::bigint[]) ORDER BY id
        """,
        list(delivery_ids),
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for a in rows:
        item = {k: v for k, v in dict(a).items() if k != "delivery_id"}
        out.setdefault(a["delivery_id"], []).append(item)
    return out


# -- alerts ----------------------------------------------------------------------------

_ALERT_COLS = (
    'alert_id, specialist_id, kpi, episode, team_id, status, "window", value, qualified, '
    "grade, samples, started_at, resolved_at, acked_at, acked_by, updated_at"
)


async def list_alerts(
    conn: Raw,
    *,
    status: str | None,
    team: str | None,
    team_ids: Sequence[str] | None,
    specialist: str | None,
    kpi: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Alerts newest first; `team` wins over `team_ids` (None = every team)."""
    where: list[str] = []
    args: list[Any] = []

    def add(cond: str, value: Any) -> None:
        args.append(value)
        where.append(cond.format(f"${len(args)}"))

    if status is not None:
        add("status = {}", status)
    if team is not None:
        add("team_id = {}", team)
    elif team_ids is not None:
        add("team_id = ANY({}::text[])", list(team_ids))
    if specialist is not None:
        add("specialist_id = {}", specialist)
    if kpi is not None:
        add("kpi = {}", kpi)
    args.append(limit)
    sql = (
        f"SELECT {_ALERT_COLS} FROM alerts"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY started_at DESC, alert_id LIMIT ${len(args)}"
    )
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def open_team_alerts(conn: Raw, team_id: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The team's firing alerts, oldest first, at most ``limit`` of them (with the
    specialist's name), and how many there are in all."""
    rows = await conn.fetch(
        """
        SELECT a.alert_id, a.specialist_id, s.name, a.kpi, a.value, a.qualified, a.started_at,
               count(*) OVER () AS total
        FROM alerts a LEFT JOIN specialists s ON s.id = a.specialist_id
        WHERE a.team_id = $1 AND a.status = 'firing'
        ORDER BY a.started_at, a.alert_id
        LIMIT $2
        """,
        team_id,
        limit,
    )
    return [dict(r) for r in rows], int(rows[0]["total"]) if rows else 0


async def get_alert(conn: Raw, alert_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_ALERT_COLS} FROM alerts WHERE alert_id = $1", alert_id)
    return None if row is None else dict(row)


async def alert_deliveries(conn: Raw, alert_id: str) -> list[dict[str, Any]]:
    """Every delivery that carried the alert, oldest first (channel kind, never its config)."""
    rows = await conn.fetch(
        """
        SELECT d.id, d.delivery_key, d.channel_id, c.kind AS channel_kind, d.status,
               d.attempts, d.next_attempt_at, d.last_error, d.created_at, d.sent_at,
               d.resent_at, d.resent_by, cardinality(d.alert_ids) AS grouped_alerts
        FROM deliveries d LEFT JOIN channels c ON c.id = d.channel_id
        WHERE d.alert_ids @> ARRAY[$1]::varchar[]
        ORDER BY d.id
        """,
        alert_id,
    )
    return [dict(r) for r in rows]


# -- silences --------------------------------------------------------------------------


async def specialist_team(conn: Raw, specialist_id: str) -> str | None:
    team: str | None = await conn.fetchval(
        "SELECT team_id FROM specialists WHERE id = $1", specialist_id
    )
    return team


async def list_silences(
    conn: Raw, active_at: dt.datetime | None, team_ids: Sequence[str] | None
) -> list[dict[str, Any]]:
    """Silences still running at `active_at` (None: all) that concern `team_ids` (None: all).

    A team's silences are those set for it, plus the organisation-wide ones (no specialist,
    no team) that mute its alerts too. `applies` is false for a specialist's silence left
    behind in a team the specialist has since left.
    """
    rows = await conn.fetch(
        """
        SELECT s.id, s.specialist_id, s.kpi, s.team_id, s.until, s.comment, s.created_by,
               s.created_at,
               (s.specialist_id IS NULL OR sp.team_id IS NOT DISTINCT FROM s.team_id)
                   AS applies
        FROM silences s
        LEFT JOIN specialists sp ON sp.id = s.specialist_id
        WHERE ($1::timestamptz IS NULL OR s.until > $1)
          AND ($2::text[] IS NULL OR s.team_id = ANY($2::text[])
               OR (s.team_id IS NULL AND s.specialist_id IS NULL))
        ORDER BY s.created_at, s.id
        """,
        active_at,
        None if team_ids is None else list(team_ids),
    )
    return [dict(r) for r in rows]


async def email_aliases(
    conn: Raw, ids: Sequence[str], per_specialist: int = 5
) -> dict[str, list[str]]:
    """specialist id -> their `email` aliases (the directory's), sorted, at most a few."""
    if not ids:
        return {}
    rows = await conn.fetch(
        """
        SELECT specialist_id, alias FROM specialist_aliases
        WHERE kind = 'email' AND specialist_id = ANY($1::text[])
        ORDER BY specialist_id, alias
        """,
        list(set(ids)),
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        found = out.setdefault(r["specialist_id"], [])
        if len(found) < per_specialist:
            found.append(r["alias"])
    return out
