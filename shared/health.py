"""Platform-health incidents: the one store every service writes and notify relays to admins.

An incident is something an operator must know about because KPIs could otherwise stop
moving or move wrongly without a word: the broker's log no longer matching the offsets we
stored (``log_reset``), records lost to retention (``offset_gap``), a consumer with lag that
applies nothing (``stall``), records dead-lettered because processing them failed
(``poison``). Conditions (``stall``) resolve by themselves when they clear; the others are
events that stay open until an admin dismisses them.

At most one incident per ``key`` is open at a time: a recurrence while it is open bumps
``occurrences`` and merges ``detail`` instead of adding rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson

from shared.db import raw_connection, session_scope

# The incident shape is pure (shared.incidents); its names are re-exported for the store's callers.
from shared.incidents import AUTO as AUTO
from shared.incidents import CONDITIONS as CONDITIONS
from shared.incidents import KINDS as KINDS
from shared.incidents import LOG_RESET as LOG_RESET
from shared.incidents import NOTIFY_CHANNEL as NOTIFY_CHANNEL
from shared.incidents import OFFSET_GAP as OFFSET_GAP
from shared.incidents import OPEN as OPEN
from shared.incidents import POISON as POISON
from shared.incidents import RESOLVED as RESOLVED
from shared.incidents import STALL as STALL
from shared.incidents import Incident as Incident
from shared.incidents import pipeline_status as pipeline_status

logger = logging.getLogger(__name__)

# asyncpg has no type stubs; callers pass the raw connection of their transaction.
Raw: TypeAlias = Any

_COLUMNS: Final = (
    "id, key, kind, service, status, summary, detail, occurrences, opened_at, updated_at, "
    "resolved_at, resolved_by"
)


def _incident(row: Any) -> Incident:
    detail = row["detail"]
    if isinstance(detail, str | bytes):
        detail = orjson.loads(detail)
    return Incident(
        id=int(row["id"]),
        key=row["key"],
        kind=row["kind"],
        service=row["service"],
        status=row["status"],
        summary=row["summary"],
        detail=detail or {},
        occurrences=int(row["occurrences"]),
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
    )


async def open_incident(
    conn: Raw,
    *,
    key: str,
    kind: str,
    service: str,
    summary: str,
    detail: Mapping[str, Any] | None = None,
) -> Incident:
    """Open the incident ``key`` or, when it is open already, count a recurrence.

    ``detail`` is merged into the stored one key by key; its ``partitions`` object (if
    any) is merged one level deeper, so resets of several partitions add up in one row.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown incident kind {kind!r}")
    row = await conn.fetchrow(
        f"""
        INSERT INTO platform_incidents AS p (key, kind, service, status, summary, detail)
        VALUES ($1, $2, $3, 'open', $4, $5::jsonb)
        ON CONFLICT (key) WHERE status = 'open' DO UPDATE SET
            occurrences = p.occurrences + 1,
            updated_at = now(),
            summary = EXCLUDED.summary,
            detail = p.detail || EXCLUDED.detail || jsonb_build_object('partitions',
                coalesce(p.detail -> 'partitions', '{{}}'::jsonb)
                || coalesce(EXCLUDED.detail -> 'partitions', '{{}}'::jsonb))
        RETURNING {_COLUMNS}
        """,
        key,
        kind,
        service,
        summary,
        orjson.dumps(dict(detail or {})).decode(),
    )
    incident = _incident(row)
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(incident.id))
    return incident


async def resolve_incident(conn: Raw, key: str, *, by: str = AUTO) -> Incident | None:
    """Resolve the open incident ``key`` (None when none is open)."""
    return await _close(conn, "key", key, by)


async def dismiss_incident(conn: Raw, incident_id: int, *, by: str) -> Incident | None:
    """An admin closes an open incident (None when it does not exist or is not open)."""
    return await _close(conn, "id", incident_id, by)


async def _close(conn: Raw, column: str, value: object, by: str) -> Incident | None:
    row = await conn.fetchrow(
        f"""
        UPDATE platform_incidents SET status = 'resolved', resolved_at = now(),
            updated_at = now(), resolved_by = $2
        WHERE {column} = $1 AND status = 'open'
        RETURNING {_COLUMNS}
        """,
        value,
        by,
    )
    if row is None:
        return None
    incident = _incident(row)
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(incident.id))
    return incident


async def get_incident(conn: Raw, incident_id: int) -> Incident | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM platform_incidents WHERE id = $1", incident_id
    )
    return _incident(row) if row is not None else None


async def list_incidents(
    conn: Raw,
    *,
    status: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[Incident]:
    """Newest first; ``since`` keeps incidents still open or updated after it."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM platform_incidents
        WHERE ($1::text IS NULL OR status = $1)
          AND ($2::timestamptz IS NULL OR status = 'open' OR updated_at >= $2)
        ORDER BY id DESC LIMIT $3
        """,
        status,
        since,
        limit,
    )
    return [_incident(r) for r in rows]


async def claim_unnotified(conn: Raw, limit: int = 100) -> list[Incident]:
    """Incidents whose current status has not been turned into deliveries yet, locked.

    SKIP LOCKED lets several notify replicas relay without sending one transition twice.
    """
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM platform_incidents
        WHERE notified IS DISTINCT FROM status
        ORDER BY id LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [_incident(r) for r in rows]


async def mark_notified(conn: Raw, incidents: Sequence[Incident]) -> None:
    """Record that each incident's current status has been relayed."""
    if not incidents:
        return
    await conn.execute(
        """
        UPDATE platform_incidents p SET notified = u.s
        FROM unnest($1::bigint[], $2::text[]) AS u(i, s)
        WHERE p.id = u.i
        """,
        [i.id for i in incidents],
        [i.status for i in incidents],
    )


async def heartbeat(conn: Raw, key: str) -> None:
    """Mark the open condition ``key`` as still observed (see :func:`expire_conditions`)."""
    await conn.execute(
        "UPDATE platform_incidents SET updated_at = now() WHERE key = $1 AND status = 'open'",
        key,
    )


async def expire_conditions(conn: Raw, older_than: dt.timedelta) -> list[Incident]:
    """Resolve open conditions nobody has observed for ``older_than``.

    A condition is reported by the process that sees it; when that process dies (a stalled
    consumer killed and replaced), nobody would ever resolve it.
    """
    rows = await conn.fetch(
        f"""
        UPDATE platform_incidents SET status = 'resolved', resolved_at = now(),
            updated_at = now(), resolved_by = 'expired'
        WHERE status = 'open' AND kind = ANY($1::text[]) AND updated_at < now() - $2::interval
        RETURNING {_COLUMNS}
        """,
        sorted(CONDITIONS),
        older_than,
    )
    expired = [_incident(r) for r in rows]
    for incident in expired:
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(incident.id))
    return expired


@dataclass(frozen=True, slots=True)
class _Report:
    action: str  # "open" | "resolve" | "heartbeat"
    key: str
    kind: str = ""
    summary: str = ""
    detail: Mapping[str, Any] | None = None


class HealthReporter:
    """Writes one service's incidents in their own short transactions.

    A report that cannot be written (the database is what failed) waits and is retried by
    the next :meth:`flush`, in order, so an incident is never lost to the moment it
    happened in. ``sessionmaker`` None (tools, some tests) only logs.
    """

    def __init__(self, service: str, sessionmaker: Any | None) -> None:
        self.service = service
        self._sessionmaker = sessionmaker
        self._pending: list[_Report] = []

    async def open(
        self, key: str, kind: str, summary: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        self._pending.append(_Report("open", key, kind, summary, detail))
        await self.flush()

    async def resolve(self, key: str) -> None:
        self._queue(_Report("resolve", key))
        await self.flush()

    async def heartbeat(self, key: str) -> None:
        self._queue(_Report("heartbeat", key))
        await self.flush()

    def _queue(self, report: _Report) -> None:
        # Resolves and heartbeats are idempotent: one waiting copy per key is enough, so
        # a long database outage cannot grow the queue.
        if report not in self._pending:
            self._pending.append(report)

    @property
    def sessionmaker(self) -> Any | None:
        return self._sessionmaker

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        if self._sessionmaker is None:
            self._pending.clear()
            return
        while self._pending:
            report = self._pending[0]
            try:
                async with session_scope(self._sessionmaker) as session:
                    conn = await raw_connection(session)
                    if report.action == "open":
                        await open_incident(
                            conn,
                            key=report.key,
                            kind=report.kind,
                            service=self.service,
                            summary=report.summary,
                            detail=report.detail,
                        )
                    elif report.action == "resolve":
                        await resolve_incident(conn, report.key)
                    else:
                        await heartbeat(conn, report.key)
            except Exception as exc:
                logger.warning(
                    "%s: platform-health report %s %s not written yet (%s); will retry",
                    self.service,
                    report.action,
                    report.key,
                    type(exc).__name__,
                )
                return
            self._pending.pop(0)
