"""Alembic environment: async engine from KPI_DATABASE_URL, metadata of every service."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from migrations.models import import_all_models
from shared.db import Base, create_engine
from shared.schema import WRITE_FENCE_KEY
from shared.settings import load_settings

import_all_models()
target_metadata = Base.metadata
config = context.config


def _url() -> str:
    url = config.attributes.get("database_url")
    return str(url) if url else load_settings().database_dsn


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        # The schema fence (shared.schema): scoring batches under way finish first, and
        # none writes again until it runs the code of the revision this leaves behind.
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_FENCE_KEY})
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url(), pool_size=1, application_name="kpi-migrate")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
