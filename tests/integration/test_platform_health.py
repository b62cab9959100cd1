"""Platform-health incident store (shared/health.py) against the real migrated database."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import health
from shared.db import raw_connection, session_scope


async def test_one_open_incident_per_key_merges_partitions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with session_scope(sessionmaker) as session:
        conn = await raw_connection(session)
        first = await health.open_incident(
            conn,
            key="log_reset:g:kpi.events",
            kind=health.LOG_RESET,
            service="scoring",
            summary="reset p0",
            detail={"topic": "kpi.events", "partitions": {"0": {"stored": 10, "found": 0}}},
        )
        again = await health.open_incident(
            conn,
            key="log_reset:g:kpi.events",
            kind=health.LOG_RESET,
            service="scoring",
            summary="reset p1",
            detail={"topic": "kpi.events", "partitions": {"1": {"stored": 7, "found": 0}}},
        )
    assert again.id == first.id
    assert again.occurrences == 2
    assert again.summary == "reset p1"
    assert set(again.detail["partitions"]) == {"0", "1"}

    async with session_scope(sessionmaker) as session:
        conn = await raw_connection(session)
        claimed = await health.claim_unnotified(conn)
        assert [i.id for i in claimed] == [first.id]
        await health.mark_notified(conn, claimed)
        assert await health.claim_unnotified(conn) == []
        dismissed = await health.dismiss_incident(conn, first.id, by="admin")
        assert dismissed is not None and dismissed.status == health.RESOLVED
        assert await health.dismiss_incident(conn, first.id, by="admin") is None
        # Resolving changed the status: it is owed to notify again.
        assert [i.id for i in await health.claim_unnotified(conn)] == [first.id]
        # A new occurrence after resolution opens a new incident.
        new = await health.open_incident(
            conn,
            key="log_reset:g:kpi.events",
            kind=health.LOG_RESET,
            service="scoring",
            summary="again",
        )
        assert new.id != first.id and new.occurrences == 1


async def test_conditions_resolve_by_key(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessionmaker) as session:
        conn = await raw_connection(session)
        assert await health.resolve_incident(conn, "stall:scoring") is None
        opened = await health.open_incident(
            conn, key="stall:scoring", kind=health.STALL, service="scoring", summary="stalled"
        )
        assert opened.condition
        resolved = await health.resolve_incident(conn, "stall:scoring")
        assert resolved is not None and resolved.resolved_by == health.AUTO
        listed = await health.list_incidents(conn)
        assert [i.id for i in listed] == [opened.id]
        assert await health.list_incidents(conn, status=health.OPEN) == []
