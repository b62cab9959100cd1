"""SQL of the ingest service: one upsert of a batch's counters, and the stats read."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger, String

from services.ingest.models import IngestStat

StatKey = tuple[str, str, str]

_UPSERT = text(
    """
    INSERT INTO ingest_stats (topic, outcome, code, count, updated_at)
    SELECT t, o, c, n, now() FROM unnest(:topics, :outcomes, :codes, :counts) AS u(t, o, c, n)
    ON CONFLICT (topic, outcome, code)
    DO UPDATE SET count = ingest_stats.count + EXCLUDED.count, updated_at = now()
    """
).bindparams(
    bindparam("topics", type_=ARRAY(String())),
    bindparam("outcomes", type_=ARRAY(String())),
    bindparam("codes", type_=ARRAY(String())),
    bindparam("counts", type_=ARRAY(BigInteger())),
)


async def add_stats(session: AsyncSession, delta: Mapping[StatKey, int]) -> None:
    """Add one batch's counts in a single statement (keys sorted: no upsert deadlocks)."""
    if not delta:
        return
    keys = sorted(delta)
    await session.execute(
        _UPSERT,
        {
            "topics": [k[0] for k in keys],
            "outcomes": [k[1] for k in keys],
            "codes": [k[2] for k in keys],
            "counts": [delta[k] for k in keys],
        },
    )


async def read_stats(session: AsyncSession) -> dict[StatKey, int]:
    rows = await session.execute(
        select(IngestStat.topic, IngestStat.outcome, IngestStat.code, IngestStat.count)
    )
    return {(t, o, c): n for t, o, c, n in rows}
