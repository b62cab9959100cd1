"""Database infrastructure: declarative base, async engine and the one session scope."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from sqlalchemy import DateTime, MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names keep Alembic migrations reviewable and reversible.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every ORM model; all tables share one metadata with naming conventions."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: DateTime(timezone=True)}


def utcnow() -> dt.datetime:
    """Timezone-aware now; the only clock helper production code uses."""
    return dt.datetime.now(dt.UTC)


def create_engine(url: str, *, pool_size: int = 10, application_name: str = "kpi") -> AsyncEngine:
    """Async engine with pre-ping so a restarted PostgreSQL heals instead of failing forever."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": 60,
            "timeout": 10,
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back on any exception."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def raw_connection(session: AsyncSession) -> Any:
    """The asyncpg connection inside the session's transaction, for bulk statements.

    SQLAlchemy begins the driver's transaction lazily, on its own first statement: raw
    statements issued before that would each autocommit (no atomicity, row locks
    released at once), so one statement through SQLAlchemy opens the transaction first.
    """
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return driver


async def ping(engine: AsyncEngine) -> None:
    """Round-trip to the database; raises when it is unreachable."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
