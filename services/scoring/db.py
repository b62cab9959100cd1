"""How scoring's read side reaches PostgreSQL: the ``Db`` protocol and the API's asyncpg pool.

Every query function takes a ``Db``: the API's ``ReadDb`` (autocommit reads, one prepared
statement per round trip, which keeps KPI queries cheap enough for dashboards polling many
specialists; see bench/bench_queries.py), or an asyncpg connection inside a transaction
(``ReadDb.transaction()`` in a route, ``shared.db.raw_connection`` in the engine).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from shared import db as shared_db

logger = logging.getLogger(__name__)

T = TypeVar("T")

# asyncpg has no type stubs: its records are typed as Any, read by column name.
Record = Any


class Db(Protocol):
    """Statements with ``$n`` parameters: the pool or a connection in a transaction."""

    async def fetch(self, query: str, *args: Any) -> list[Record]: ...

    async def fetchrow(self, query: str, *args: Any) -> Record | None: ...


class Conn(Db, Protocol):
    """An asyncpg connection inside a transaction: the one way scoring's SQL runs in one.

    asyncpg ships no type stubs; this names the part of it scoring uses (array binding and
    speed are why the engine talks to the driver directly).
    """

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    def is_in_transaction(self) -> bool: ...


async def raw_connection(session: AsyncSession) -> Conn:
    """The driver connection inside ``session``'s transaction (opened first if needed)."""
    conn: Conn = await shared_db.raw_connection(session)
    return conn


# Errors that mean "this pooled connection is dead" (e.g. PostgreSQL restarted): reads are
# idempotent, so one retry on a fresh connection heals without surfacing a 500.
_STALE = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The libpq-style URL asyncpg wants from the SQLAlchemy ``postgresql+asyncpg://`` one."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


class ReadDb:
    """A lazily-connecting asyncpg pool for the API's statements (created in lifespan)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def create(cls, database_url: str, max_size: int = 10) -> ReadDb:
        # min_size=0: starting the service must not need the database (readiness reports it).
        pool = await asyncpg.create_pool(
            asyncpg_dsn(database_url),
            min_size=0,
            max_size=max_size,
            command_timeout=30,
            server_settings={"application_name": "scoring-api"},
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except _STALE as exc:
            logger.warning("read failed on a stale connection (%s); retrying once", exc)
            return await op()

    async def fetch(self, query: str, *args: Any) -> list[Record]:
        rows: list[Record] = await self._retry(lambda: self.pool.fetch(query, *args))
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Record | None:
        return await self._retry(lambda: self.pool.fetchrow(query, *args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """One connection in one transaction, committed when the block succeeds."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn
