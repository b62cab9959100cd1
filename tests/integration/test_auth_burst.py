"""A burst of first-time credential lookups is a queue, not an outage (real PostgreSQL)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from shared.auth import Authenticator, Credential, Principal, Role
from shared.db import create_engine, create_sessionmaker


async def test_a_burst_of_new_sessions_is_answered_not_refused(database_url: str) -> None:
    """100 dashboards opening at once through a 4-connection pool, each lookup 50 ms: the
    last ones wait about 1.25 s for a connection. The 1 s lookup timeout runs from a lookup's
    turn, so none is taken for an outage (before, the queue wait counted and they got 503)."""
    engine = create_engine(database_url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)

    async def slow_session_lookup(digest: str) -> Principal | None:
        async with sessionmaker() as session:
            await session.execute(text("SELECT pg_sleep(0.05)"))
        return Principal(Role.SUPERVISOR, digest[:12])

    authenticator = Authenticator(
        sessionmaker, None, lookup_timeout=1.0, session_lookup=slow_session_lookup
    )
    try:
        found = await asyncio.gather(
            *(authenticator.resolve_credential(Credential("session", f"s{i}")) for i in range(100))
        )
    finally:
        await engine.dispose()
    assert all(isinstance(p, Principal) for p in found)
    assert len({p.subject for p in found if p is not None}) == 100
