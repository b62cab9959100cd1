"""Notify's writes (raw asyncpg inside the session's transaction, sorted keys) and the row locks
that precede them: alert state, the transition log, channels and silences.

Read-only SQL is in `queries`, the delivery outbox in `outbox`.
"""

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


def from_json(value: Any) -> Any:
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
        r["specialist_id"], r["kpi"], from_json(r["state"]), from_json(r["last_obs"]), r["team_id"]
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


# -- channels --------------------------------------------------------------------------


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


CHANNEL_COLS = "id, name, kind, team_id, lang, enabled, config, created_at, updated_at"


def channel_record(r: Any) -> ChannelRecord:
    return ChannelRecord(
        r["id"],
        r["name"],
        r["kind"],
        r["team_id"],
        r["lang"],
        r["enabled"],
        from_json(r["config"]),
        r["created_at"],
        r["updated_at"],
    )


async def save_channel(conn: Raw, ch: ChannelRecord) -> ChannelRecord:
    row = await conn.fetchrow(
        f"""
        INSERT INTO channels (id, name, kind, team_id, lang, enabled, config, created_at,
                              updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)
        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
            team_id = EXCLUDED.team_id, lang = EXCLUDED.lang, enabled = EXCLUDED.enabled,
            config = EXCLUDED.config, updated_at = EXCLUDED.updated_at
        RETURNING {CHANNEL_COLS}
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
    return channel_record(row)


async def delete_channel(conn: Raw, channel_id: str) -> bool:
    status: str = await conn.execute("DELETE FROM channels WHERE id = $1", channel_id)
    return status.endswith(" 1")


# -- silences --------------------------------------------------------------------------


async def insert_silence(
    conn: Raw,
    *,
    silence_id: str,
    specialist_id: str | None,
    kpi: str | None,
    team_id: str | None,
    until: dt.datetime,
    comment: str | None,
    created_by: str,
    created_at: dt.datetime,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        """
        INSERT INTO silences (id, specialist_id, kpi, team_id, until, comment, created_by,
                              created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING id, specialist_id, kpi, team_id, until, comment, created_by, created_at
        """,
        silence_id,
        specialist_id,
        kpi,
        team_id,
        until,
        comment,
        created_by,
        created_at,
    )
    return dict(row)


async def lock_silence(conn: Raw, silence_id: str) -> dict[str, Any] | None:
    """The silence's team and specialist, its row locked until the transaction ends."""
    row = await conn.fetchrow(
        "SELECT team_id, specialist_id FROM silences WHERE id = $1 FOR UPDATE", silence_id
    )
    return None if row is None else dict(row)


async def delete_silence(conn: Raw, silence_id: str) -> None:
    await conn.execute("DELETE FROM silences WHERE id = $1", silence_id)
