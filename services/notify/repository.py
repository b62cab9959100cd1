"""SQL of the notify service (raw asyncpg inside the session's transaction, sorted keys)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

# Call sites use repository.raw_connection; the implementation is shared infrastructure.
from shared.db import raw_connection as raw_connection

# asyncpg has no type stubs; the raw connection is used for its array binding and speed.
Raw: TypeAlias = Any
Key: TypeAlias = tuple[str, str]

ALERT_CHANNEL = "kpi_alerts"


def jdump(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_UTC_Z).decode()


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@dataclass
class StateRow:
    specialist_id: str
    kpi: str
    state: dict[str, Any]
    last_obs: dict[str, Any] | None
    team_id: str | None


def _state_row(r: Any) -> StateRow:
    return StateRow(
        r["specialist_id"], r["kpi"], _json(r["state"]), _json(r["last_obs"]), r["team_id"]
    )


# -- alert state -----------------------------------------------------------------------


async def lock_states(conn: Raw, keys: Sequence[Key]) -> dict[Key, StateRow]:
    """Lock the existing state rows of ``keys`` in key order (deadlock-free across replicas)."""
    if not keys:
        return {}
    ordered = sorted(set(keys))
    rows = await conn.fetch(
        """
        SELECT s.specialist_id, s.kpi, s.state, s.last_obs, s.team_id
        FROM alert_states s
        JOIN unnest($1::text[], $2::text[]) AS k(sid, kpi)
          ON s.specialist_id = k.sid AND s.kpi = k.kpi
        ORDER BY s.specialist_id, s.kpi
        FOR UPDATE OF s
        """,
        [k[0] for k in ordered],
        [k[1] for k in ordered],
    )
    return {(r["specialist_id"], r["kpi"]): _state_row(r) for r in rows}


async def claim_open_states(conn: Raw, limit: int) -> list[StateRow]:
    """Open, pending or owed-resolve states for the tick; rows busy elsewhere are skipped."""
    rows = await conn.fetch(
        """
        SELECT specialist_id, kpi, state, last_obs, team_id
        FROM alert_states
        WHERE (status IN ('pending', 'firing') OR state->>'notified' = 'firing')
          AND last_obs IS NOT NULL
        ORDER BY specialist_id, kpi
        LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [_state_row(r) for r in rows]


async def lock_state_by_alert(conn: Raw, alert_id: str) -> StateRow | None:
    row = await conn.fetchrow(
        """
        SELECT specialist_id, kpi, state, last_obs, team_id FROM alert_states
        WHERE alert_id = $1 FOR UPDATE
        """,
        alert_id,
    )
    return None if row is None else _state_row(row)


async def upsert_states(conn: Raw, rows: Sequence[dict[str, Any]], now: dt.datetime) -> None:
    if not rows:
        return
    rows = sorted(rows, key=lambda r: (r["specialist_id"], r["kpi"]))
    await conn.execute(
        """
        INSERT INTO alert_states (specialist_id, kpi, state, last_obs, status, episode,
                                  alert_id, team_id, observed_at, updated_at)
        SELECT u.sid, u.kpi, u.state::jsonb, u.obs::jsonb, u.status, u.episode, u.alert_id,
               u.team_id, u.observed_at, $10
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                    $7::text[], $8::text[], $9::timestamptz[])
             AS u(sid, kpi, state, obs, status, episode, alert_id, team_id, observed_at)
        ON CONFLICT (specialist_id, kpi) DO UPDATE SET
            state = EXCLUDED.state, last_obs = EXCLUDED.last_obs, status = EXCLUDED.status,
            episode = EXCLUDED.episode, alert_id = EXCLUDED.alert_id,
            team_id = EXCLUDED.team_id, observed_at = EXCLUDED.observed_at,
            updated_at = EXCLUDED.updated_at
        """,
        [r["specialist_id"] for r in rows],
        [r["kpi"] for r in rows],
        [jdump(r["state"]) for r in rows],
        [None if r["last_obs"] is None else jdump(r["last_obs"]) for r in rows],
        [r["status"] for r in rows],
        [r["episode"] for r in rows],
        [r["alert_id"] for r in rows],
        [r["team_id"] for r in rows],
        [r["observed_at"] for r in rows],
        now,
    )


async def upsert_episodes(conn: Raw, rows: Sequence[dict[str, Any]], now: dt.datetime) -> None:
    for r in sorted(rows, key=lambda r: str(r["alert_id"])):
        await conn.execute(
            """
            INSERT INTO alerts (alert_id, specialist_id, kpi, episode, team_id, status, "window",
                                value, qualified, grade, samples, started_at, resolved_at,
                                acked_at, acked_by, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            ON CONFLICT (alert_id) DO UPDATE SET
                team_id = EXCLUDED.team_id, status = EXCLUDED.status,
                "window" = EXCLUDED."window", value = EXCLUDED.value,
                qualified = EXCLUDED.qualified, grade = EXCLUDED.grade,
                samples = EXCLUDED.samples, resolved_at = EXCLUDED.resolved_at,
                acked_at = COALESCE(EXCLUDED.acked_at, alerts.acked_at),
                acked_by = COALESCE(EXCLUDED.acked_by, alerts.acked_by),
                updated_at = EXCLUDED.updated_at
            """,
            r["alert_id"],
            r["specialist_id"],
            r["kpi"],
            r["episode"],
            r["team_id"],
            r["status"],
            r["window"],
            r["value"],
            r["qualified"],
            r["grade"],
            r["samples"],
            r["started_at"],
            r["resolved_at"],
            r["acked_at"],
            r.get("acked_by"),
            now,
        )


# Serializes the transactions that log transitions, from their first event row to commit:
# alert_events ids are then in commit order, so "every event after id N" (SSE Last-Event-ID
# replay) cannot miss a row that a slower transaction commits later with a smaller id.
EVENTS_LOCK = 0x6B70_695F_6576_7473  # b"kpi_evts"


async def insert_events(conn: Raw, events: Sequence[dict[str, Any]]) -> list[int]:
    """Transition log rows, and a NOTIFY per transition for the SSE streams (sent on commit).

    Call it last in the transaction: it takes `EVENTS_LOCK`, which is held until commit.
    Returns the new rows' ids (the SSE event ids), in insertion order.
    """
    if not events:
        return []
    await conn.execute("SELECT pg_advisory_xact_lock($1)", EVENTS_LOCK)
    ids: list[int] = []
    for e in events:
        # json (not jsonb) keeps the stored text as is inside the {"id", "data"} envelope.
        row = await conn.fetchrow(
            """
            WITH ins AS (
                INSERT INTO alert_events (alert_id, specialist_id, kpi, team_id, transition,
                                          status, at, data)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)
                RETURNING id
            )
            SELECT id, pg_notify($9, json_build_object('id', id, 'data', $8::text::json)::text)
            FROM ins
            """,
            e["alert_id"],
            e["specialist_id"],
            e["kpi"],
            e["team_id"],
            e["transition"],
            e["status"],
            e["at"],
            jdump(e),
            ALERT_CHANNEL,
        )
        ids.append(row["id"])
    return ids


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
    return [(r["id"], _json(r["data"])) for r in rows]


# -- reference data --------------------------------------------------------------------


async def active_silences(conn: Raw, now: dt.datetime) -> list[tuple[str | None, str | None]]:
    rows = await conn.fetch("SELECT specialist_id, kpi FROM silences WHERE until > $1", now)
    return [(r["specialist_id"], r["kpi"]) for r in rows]


async def directory(conn: Raw, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """specialist id -> (team_id, name) for the known ones."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, team_id, name FROM specialists WHERE id = ANY($1::text[])", list(set(ids))
    )
    return {r["id"]: (r["team_id"], r["name"]) for r in rows}


@dataclass(frozen=True)
class ChannelRecord:
    id: str
    name: str
    kind: str
    team_id: str | None
    lang: str | None
    enabled: bool
    config: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


_CHANNEL_COLS = "id, name, kind, team_id, lang, enabled, config, created_at, updated_at"


def _channel(r: Any) -> ChannelRecord:
    return ChannelRecord(
        r["id"],
        r["name"],
        r["kind"],
        r["team_id"],
        r["lang"],
        r["enabled"],
        _json(r["config"]),
        r["created_at"],
        r["updated_at"],
    )


async def enabled_channels(conn: Raw) -> list[ChannelRecord]:
    rows = await conn.fetch(f"SELECT {_CHANNEL_COLS} FROM channels WHERE enabled ORDER BY id")
    return [_channel(r) for r in rows]


async def channels_by_id(conn: Raw, ids: Sequence[str]) -> dict[str, ChannelRecord]:
    rows = await conn.fetch(
        f"SELECT {_CHANNEL_COLS} FROM channels WHERE id = ANY($1::text[])", list(set(ids))
    )
    return {r["id"]: _channel(r) for r in rows}


async def list_channels(conn: Raw, team_ids: Sequence[str] | None) -> list[ChannelRecord]:
    if team_ids is None:
        rows = await conn.fetch(f"SELECT {_CHANNEL_COLS} FROM channels ORDER BY created_at, id")
    else:
        rows = await conn.fetch(
            f"SELECT {_CHANNEL_COLS} FROM channels WHERE team_id = ANY($1::text[]) "
            "ORDER BY created_at, id",
            list(team_ids),
        )
    return [_channel(r) for r in rows]


async def get_channel(conn: Raw, channel_id: str) -> ChannelRecord | None:
    row = await conn.fetchrow(f"SELECT {_CHANNEL_COLS} FROM channels WHERE id = $1", channel_id)
    return None if row is None else _channel(row)


async def save_channel(conn: Raw, ch: ChannelRecord) -> ChannelRecord:
    row = await conn.fetchrow(
        f"""
        INSERT INTO channels (id, name, kind, team_id, lang, enabled, config, created_at,
                              updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)
        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
            team_id = EXCLUDED.team_id, lang = EXCLUDED.lang, enabled = EXCLUDED.enabled,
            config = EXCLUDED.config, updated_at = EXCLUDED.updated_at
        RETURNING {_CHANNEL_COLS}
        """,
        ch.id,
        ch.name,
        ch.kind,
        ch.team_id,
        ch.lang,
        ch.enabled,
        jdump(ch.config),
        ch.created_at,
        ch.updated_at,
    )
    return _channel(row)


async def delete_channel(conn: Raw, channel_id: str) -> bool:
    status: str = await conn.execute("DELETE FROM channels WHERE id = $1", channel_id)
    return status.endswith(" 1")


async def team_exists(conn: Raw, team_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM teams WHERE id = $1", team_id))


# -- delivery outbox -------------------------------------------------------------------


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
            _json(r["items"]),
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


async def delivery_counts(conn: Raw) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


# -- delivery log and resend ------------------------------------------------------------

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
    out["items"] = _json(out["items"])
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
