"""A scoring process that has lag but applies nothing is reported: /readyz, metric, incident."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.events import encode_event, partition_key, validate_event_obj
from shared.topics import Topics
from tests.kafka_helpers import produce, wait_for
from tests.service_helpers import service_env, start_service, wait_status


async def incident(sm: async_sessionmaker[AsyncSession]) -> Any:
    async with sm() as session:
        rows = await session.execute(
            text(
                "SELECT status, resolved_by, summary FROM platform_incidents "
                "WHERE kind = 'stall' ORDER BY id DESC LIMIT 1"
            )
        )
        return rows.first()


async def test_stalled_scoring_is_reported_and_the_report_clears(
    tmp_path: Path,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
) -> None:
    env = service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=created_topics.prefix,
        KPI_STALL_SECONDS="3",
        KPI_LOG_FORMAT="text",
    )
    svc = start_service("scoring", env, tmp_path)
    lock_conn = await clean_db.connect()
    try:
        wait_status(svc.url + "/readyz", 200, timeout=40)
        # Every claim of an event id now waits: lag without progress, whatever the cause.
        tx = await lock_conn.begin()
        await lock_conn.execute(text("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE"))
        events = [
            encode_event(
                validate_event_obj(
                    {
                        "event_id": f"st-{i}",
                        "type": "record.audited",
                        "occurred_at": "2026-11-02T10:00:00Z",
                        "specialist_id": f"s{i % 3}",
                        "accurate": True,
                    }
                )
            )
            for i in range(20)
        ]
        await produce(
            bootstrap,
            created_topics.events,
            events,
            key=lambda v: partition_key(validate_event_obj(orjson.loads(v))),
        )
        ready = wait_status(svc.url + "/readyz", 503, timeout=40)
        assert "stalled" in ready.json()["checks"]["scoring_stall"]
        await wait_for(
            lambda: (
                'kpi_consumer_stalled{service="scoring"} 1.0'
                in wait_status(svc.url + "/metrics", 200).text
            ),
            timeout=15,
        )
        # Incidents live in their own table: the lock does not hold up the report.
        await wait_for(lambda: _status(sessionmaker, "open"), timeout=30)
        row = await incident(sessionmaker)
        assert "records not applied" in row[2]

        await tx.rollback()
        await wait_for(lambda: _status(sessionmaker, "resolved"), timeout=40)
        wait_status(svc.url + "/readyz", 200, timeout=30)
        async with sessionmaker() as session:
            applied = (
                await session.execute(text("SELECT count(*) FROM processed_events"))
            ).scalar_one()
        assert applied == 20
        assert (await incident(sessionmaker))[1] == "auto"
    finally:
        await lock_conn.close()
        svc.stop()


async def _status(sm: async_sessionmaker[AsyncSession], status: str) -> bool:
    row = await incident(sm)
    return row is not None and row[0] == status
