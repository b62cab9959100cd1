"""The schema fence: a scoring batch writes only to the schema revision its code expects,
and a migration waits for the batches under way (a rolling upgrade cannot mix the two)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from migrations import upgrade
from services.scoring.engine import repository as repo
from shared.embedded import EmbeddedPostgres
from shared.poison import is_transient
from shared.schema import WRITE_FENCE_KEY, SchemaMoved, expected_revision

HASH = "0" * 64


@pytest.fixture(scope="module")
def fence_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own: these tests move alembic_version."""
    url = pg_server.create_database(f"kpi_fence_{uuid.uuid4().hex[:8]}")
    upgrade(url, "head")
    yield url


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def test_a_batch_against_another_revision_writes_nothing(fence_url: str) -> None:
    conn = await asyncpg.connect(dsn(fence_url))
    try:
        head = expected_revision()
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head
        async with conn.transaction():
            assert await repo.claim_events(conn, ["a"], [HASH]) == {"a"}
        # A newer release migrated the database: this release's batch refuses, as retryable
        # (the records are fine; the process is out of date), and claims nothing.
        await conn.execute("UPDATE alembic_version SET version_num = '9999'")
        try:
            with pytest.raises(SchemaMoved, match="9999") as caught:
                async with conn.transaction():
                    await repo.claim_events(conn, ["b"], [HASH])
            assert is_transient(caught.value)
            assert await conn.fetchval("SELECT count(*) FROM processed_events") == 1
        finally:
            await conn.execute("UPDATE alembic_version SET version_num = $1", head)
    finally:
        await conn.close()


async def test_a_migration_waits_for_a_batch_under_way(fence_url: str) -> None:
    batch = await asyncpg.connect(dsn(fence_url))
    watcher = await asyncpg.connect(dsn(fence_url))
    try:
        tx = batch.transaction()
        await tx.start()
        await repo.claim_events(batch, ["c"], [HASH])  # holds the fence shared until commit
        migrating = asyncio.create_task(asyncio.to_thread(upgrade, fence_url, "head"))

        async def migration_waits() -> bool:
            return bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND ((classid::bigint << 32) | objid::bigint) = $1",
                    WRITE_FENCE_KEY,
                )
            )

        for _ in range(200):
            if await migration_waits():
                break
            assert not migrating.done(), "the migration ran past a batch holding the fence"
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the migration never asked for the fence")
        assert not migrating.done()
        await tx.commit()
        await asyncio.wait_for(migrating, 60)
    finally:
        await batch.close()
        await watcher.close()
