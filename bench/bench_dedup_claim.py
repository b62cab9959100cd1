"""Cost of the event-id claim and of migration 0020 with a horizon full of ids.

Usage: .venv/bin/python bench/bench_dedup_claim.py [--ids 1000000] [--batches 40] [--batch 4000]

Starts an embedded PostgreSQL in a temporary directory, migrates to the revision before 0020
(the unpartitioned processed_events), loads ``--ids`` ids first seen over the last 90 days,
times the claim of batches of 4,000 ids (5 % of them already known, spread over the
horizon, each batch its own committed transaction), then times migration 0020 on those rows
and the same claims against the generations, and prints bytes per id before and after.
``--facts`` kpi_facts rows are migrated too (``--facts 0`` to time the dedup table alone).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic.script import ScriptDirectory

from migrations import alembic_config, upgrade
from services.scoring.engine import repository
from shared.embedded import EmbeddedPostgres

# The claim as it was before migration 0020 (one unique index over all ids).
OLD_CLAIM = """
WITH ins AS (
    INSERT INTO processed_events (event_id, payload_hash)
    SELECT i, h FROM unnest($1::text::text[], $2::text[]) AS u(i, h)
    ORDER BY i COLLATE "C"
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
SELECT i FROM unnest($1::text::text[]) AS u(i)
WHERE NOT EXISTS (SELECT FROM ins WHERE ins.event_id = u.i)
"""

SIZE = """
SELECT coalesce(sum(pg_total_relation_size(relid)), 0)
FROM pg_partition_tree('processed_events')
"""
SIZE_BEFORE = "SELECT pg_total_relation_size('processed_events')"


def plain(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


async def load(conn: Any, n: int) -> None:
    await conn.execute(
        """
        INSERT INTO processed_events (event_id, payload_hash, first_seen_at)
        SELECT gen_random_uuid()::text, encode(sha256(i::text::bytea), 'hex'),
               now() - (i % 90) * interval '1 day' - (i % 86400) * interval '1 second'
        FROM generate_series(1, $1) AS i
        """,
        n,
    )
    await conn.execute("VACUUM ANALYZE processed_events")


async def claims(conn: Any, batches: int, size: int, new_claim: bool) -> list[float]:
    known = [r[0] for r in await conn.fetch(
        "SELECT event_id FROM processed_events TABLESAMPLE SYSTEM (1) LIMIT $1",
        batches * size // 20,
    )]  # fmt: skip
    rng = random.Random(7)
    times: list[float] = []
    for b in range(batches):
        dups = known[b * size // 20 : (b + 1) * size // 20]
        ids = [str(uuid.uuid4()) for _ in range(size - len(dups))] + dups
        rng.shuffle(ids)
        hashes = ["0" * 64] * len(ids)
        start = time.perf_counter()
        async with conn.transaction():
            if new_claim:
                fresh = await repository.claim_events(conn, ids, hashes)
            else:
                rows = await conn.fetch(OLD_CLAIM, repository._text_array(ids), hashes)
                fresh = set(ids) - {r[0] for r in rows}
        times.append(time.perf_counter() - start)
        assert len(fresh) == len(ids) - len(dups), (len(fresh), len(ids), len(dups))
    return times


def report(name: str, times: list[float], size: int) -> None:
    times = times[3:]  # warm-up
    med = statistics.median(times)
    print(
        f"{name}: median {med * 1000:.1f} ms per batch of {size} "
        f"({med / size * 1e6:.2f} µs per id), "
        f"p90 {sorted(times)[len(times) * 9 // 10] * 1000:.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--facts", type=int, default=1_000_000, help="kpi_facts rows (over 400 days) to migrate"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-dedup-"))
    pg = EmbeddedPostgres(home / "pg")
    pg.start()
    try:
        url = pg.create_database(f"bench_{uuid.uuid4().hex[:6]}")
        # Up to the revision before 0020 (the unpartitioned tables).
        script = ScriptDirectory.from_config(alembic_config(url))
        previous = str(script.get_revision("0020").down_revision)
        await asyncio.to_thread(upgrade, url, previous)
        conn = await asyncpg.connect(plain(url))
        try:
            t = time.perf_counter()
            await load(conn, args.ids)
            await conn.execute(
                """
                INSERT INTO kpi_facts (specialist_id, day, metric, source, num, den)
                SELECT 'sp' || (i % 1000), CAST(now() AS date) - (i / 1000) % 400, 'csat',
                       'ticket:' || i, 1.0, 1
                FROM generate_series(1, $1) AS i
                """,
                args.facts,
            )
            print(f"loaded {args.ids} ids in {time.perf_counter() - t:.1f} s")
            size = await conn.fetchval(SIZE_BEFORE)
            print(f"before: {size / args.ids:.0f} bytes per id (table + indexes)")
            report("before (one table)", await claims(conn, args.batches, args.batch, False),
                   args.batch)  # fmt: skip
            # The benchmark's own claims out again: the migration copies the same rows.
            await conn.execute(
                "DELETE FROM processed_events WHERE first_seen_at > now() - interval '1 hour'"
            )
        finally:
            await conn.close()
        t = time.perf_counter()
        await asyncio.to_thread(upgrade, url, "0020")
        print(
            f"migration 0020: {time.perf_counter() - t:.1f} s for {args.ids} ids "
            f"and {args.facts} facts"
        )
        conn = await asyncpg.connect(plain(url))
        try:
            await conn.execute("ANALYZE processed_events")
            parts = await conn.fetchval(
                "SELECT count(*) FROM pg_partition_tree('processed_events') WHERE isleaf"
            )
            size = await conn.fetchval(SIZE)
            print(f"after: {parts} partitions, {size / args.ids:.0f} bytes per id")
            if args.explain:
                ids = [str(uuid.uuid4()) for _ in range(args.batch)]
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock_shared(1)")
                    plan = await conn.fetch(
                        "EXPLAIN (ANALYZE, BUFFERS) SELECT event_id FROM processed_events "
                        "WHERE event_id = ANY(ARRAY(SELECT unnest($1::text::text[]))) "
                        "AND generation < kpi_dedup_generation()",
                        repository._text_array(ids),
                    )
                    print("\n".join(r[0][:150] for r in plan if "Cond" not in r[0]))
            report("after (generations)", await claims(conn, args.batches, args.batch, True),
                   args.batch)  # fmt: skip
        finally:
            await conn.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
