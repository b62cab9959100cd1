"""Raw asyncpg statements of the scoring and notify repositories run inside the session's
transaction: a rollback undoes them and their row locks are held until the commit.

Regression: SQLAlchemy opens the driver transaction lazily, so raw statements issued first
autocommitted one by one (found by the chaos harness: a SIGKILLed scoring batch left its
event claims and ticket state committed without the KPI deltas)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notify import repository as notify_repo
from services.scoring.engine import repository as scoring_repo
from shared.db import create_sessionmaker, session_scope


class Boom(Exception):
    pass


@pytest.mark.parametrize("repo", [scoring_repo, notify_repo], ids=["scoring", "notify"])
async def test_raw_statements_roll_back_with_the_session(
    clean_db: AsyncEngine, repo: object
) -> None:
    sessionmaker = create_sessionmaker(clean_db)
    event_id = f"raw-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Boom):
        async with session_scope(sessionmaker) as session:
            conn = await repo.raw_connection(session)  # type: ignore[attr-defined]
            assert conn.is_in_transaction()
            await conn.execute(
                "INSERT INTO processed_events (event_id, payload_hash) VALUES ($1, $2)",
                event_id,
                "0" * 64,
            )
            raise Boom
    async with clean_db.connect() as check:
        found = await check.execute(
            text("SELECT count(*) FROM processed_events WHERE event_id = :i"), {"i": event_id}
        )
        assert found.scalar_one() == 0


async def test_a_row_lock_taken_raw_is_held_until_commit(clean_db: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(clean_db)
    async with session_scope(sessionmaker) as session:  # the row exists, committed
        conn = await scoring_repo.raw_connection(session)
        await scoring_repo.lock_offsets(conn, "g-raw", [("t", 0)])
    async with session_scope(sessionmaker) as session:
        conn = await scoring_repo.raw_connection(session)
        await scoring_repo.lock_offsets(conn, "g-raw", [("t", 0)])
        async with clean_db.connect() as other:
            unlocked = await other.execute(
                text(
                    "SELECT partition FROM consumer_offsets WHERE group_id = 'g-raw' "
                    "FOR UPDATE SKIP LOCKED"
                )
            )
            assert unlocked.all() == []  # still ours: the other transaction skips it
