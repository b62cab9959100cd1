"""Shared pytest fixtures: embedded PostgreSQL and broker for integration tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.embedded import EmbeddedBroker, EmbeddedPostgres
from shared.topics import Topics
from tests.service_helpers import worker_port

ARTIFACTS = Path(os.environ.get("KPI_TEST_ARTIFACTS", "test-artifacts"))

# Hypothesis' per-example deadline (200 ms) measures the machine's load, not the code: on two
# shared cores a busy moment failed correct properties. Speed is measured by bench/, not here.
settings.register_profile("kpi", deadline=None)
settings.load_profile("kpi")


@pytest.fixture(scope="session")
def tmp_home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kpi-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_home() -> Iterator[Path]:
    """A directory for a test's own PostgreSQL data, outside pytest's tmp_path: every pytest
    that starts (an xdist worker, another checkout's run) resets /tmp/pytest-of-USER to 0700,
    which locks the unprivileged PostgreSQL user out of a data directory below it."""
    path = Path(tempfile.mkdtemp(prefix="kpi-test-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def temp_files(tmp_path: Path) -> Iterator[Callable[[], list[str]]]:
    """This process's temp dir (tempfile) moved to one of this test: yields a function that
    names the files left in it, so other processes' temp files are never counted."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        yield lambda: sorted(p.name for p in tmp_path.iterdir())
    finally:
        tempfile.tempdir = saved


@pytest.fixture(scope="session")
def pg_server(tmp_home: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_home / "pgdata", port=worker_port())
    server.start()
    asyncio.run(_without_disk_flushes(server.url))
    yield server
    server.stop()


async def _without_disk_flushes(url: str) -> None:
    """The tests' server keeps nothing that must survive a crash of the machine (no test
    stops or kills it), so commits do not wait for the disk: about 4 ms less per commit."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {name} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url(pg_server: EmbeddedPostgres) -> str:
    """A fresh database with the real migrations applied once per session."""
    from migrations import upgrade

    external = os.environ.get("KPI_TEST_DATABASE_URL")
    if external and os.environ.get("PYTEST_XDIST_WORKER"):
        # Every test empties the tables first: workers sharing one database would race.
        pytest.fail("KPI_TEST_DATABASE_URL is one database for one process: use -n 0")
    url = external or pg_server.create_database(f"kpi_test_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def broker(tmp_home: Path) -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(port=worker_port(), log_path=tmp_home / "broker.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=5, application_name="kpi-tests")
    yield eng
    await eng.dispose()


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> AsyncEngine:
    """Empty every table (schema stays at head) so each test starts from nothing."""
    # A service started by a module-scoped fixture may still be committing batches;
    # TRUNCATE can then lose a deadlock against it, which is retried, not a failure.
    for attempt in range(5):
        try:
            async with engine.begin() as conn:
                # Partitioned tables by their parent only (TRUNCATE empties the partitions):
                # a service's retention worker may drop a partition between list and TRUNCATE.
                rows = await conn.execute(
                    text(
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                        "AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                        "AND c.relname <> 'alembic_version'"
                    )
                )
                names = [r[0] for r in rows]
                if names:
                    await conn.execute(
                        text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " CASCADE")
                    )
            return engine
        except DBAPIError as exc:
            if "deadlock" not in str(exc).lower() or attempt == 4:
                raise
    return engine


@pytest.fixture
def sessionmaker(clean_db: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(clean_db)


@pytest.fixture
def topics() -> Topics:
    """Random topic names per test: tests sharing the broker never see each other."""
    return Topics(f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
async def created_topics(bootstrap: str, topics: Topics) -> Topics:
    from shared.kafka import ensure_topics

    await ensure_topics(bootstrap, 3, topics.all)
    return topics


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        from tests import parallel

        parallel.register(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
