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


async def sample_known(conn: Any, batches: int, size: int) -> list[str]:
    """Ids already claimed, spread over the horizon: 5 % of every batch."""
    rows = await conn.fetch(
        "SELECT event_id FROM processed_events TABLESAMPLE SYSTEM (1) LIMIT $1",
        batches * size // 20,
    )
    return [r[0] for r in rows]


async def claim_batch(conn: Any, ids: list[str], new_claim: bool) -> tuple[float, int]:
    hashes = ["0" * 64] * len(ids)
    start = time.perf_counter()
    async with conn.transaction():
        if new_claim:
            fresh = await repository.claim_events(conn, ids, hashes)
        else:
            rows = await conn.fetch(OLD_CLAIM, repository._text_array(ids), hashes)
            fresh = set(ids) - {r[0] for r in rows}
    return time.perf_counter() - start, len(fresh)


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
        # Two databases with the same load: one stays before 0020, the other is migrated;
        # their claims alternate batch by batch so both see the same machine load.
        urls = [pg.create_database(f"bench_{uuid.uuid4().hex[:6]}") for _ in range(2)]
        script = ScriptDirectory.from_config(alembic_config(urls[0]))
        previous = str(script.get_revision("0020").down_revision)
        for url in urls:
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
            finally:
                await conn.close()
        conn = await asyncpg.connect(plain(urls[0]))
        size = await conn.fetchval(SIZE_BEFORE)
        await conn.close()
        print(f"before: {size / args.ids:.0f} bytes per id (table + indexes)")
        t = time.perf_counter()
        await asyncio.to_thread(upgrade, urls[1], "0020")
        print(
            f"migration 0020: {time.perf_counter() - t:.1f} s for {args.ids} ids "
            f"and {args.facts} facts"
        )
        old, new = [await asyncpg.connect(plain(u)) for u in urls]
        try:
            await new.execute("ANALYZE processed_events")
            parts = await new.fetchval(
                "SELECT count(*) FROM pg_partition_tree('processed_events') WHERE isleaf"
            )
            size = await new.fetchval(SIZE)
            print(f"after: {parts} partitions, {size / args.ids:.0f} bytes per id")
            if args.explain:
                ids = [str(uuid.uuid4()) for _ in range(args.batch)]
                plan = await new.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS) SELECT event_id FROM processed_events "
                    "WHERE event_id = ANY(ARRAY(SELECT unnest($1::text::text[]))) "
                    "AND generation < kpi_dedup_generation()",
                    repository._text_array(ids),
                )
                print("\n".join(r[0][:150] for r in plan if "Cond" not in r[0]))
            known = [await sample_known(c, args.batches, args.batch) for c in (old, new)]
            times: list[list[float]] = [[], []]
            per = args.batch // 20
            for b in range(args.batches):
                for k, (conn, new_claim) in enumerate(((old, False), (new, True))):
                    dups = known[k][b * per : (b + 1) * per]
                    ids = [str(uuid.uuid4()) for _ in range(args.batch - len(dups))] + dups
                    random.Random(b).shuffle(ids)
                    took, fresh = await claim_batch(conn, ids, new_claim)
                    assert fresh == len(ids) - len(dups), (fresh, len(ids), len(dups))
                    times[k].append(took)
            report("before (one table)", times[0], args.batch)
            report("after (generations)", times[1], args.batch)
        finally:
            await old.close()
            await new.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
