"""Storage per event of the tables that grow with events, after applying a known number.

Usage: .venv/bin/python bench/bench_storage.py [--events 200000] [--retention-days 90]

Applies bench_scoring's realistic mix (ticket lifecycles, surveys, audits, peer reviews over
60 days, ~5 % duplicates) through the scoring use-case in batches of 4,000 on an embedded
PostgreSQL at the newest migration, then prints pg_total_relation_size (heap + indexes +
TOAST, every partition) of each table per applied event, per ticket and per million events.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scoring import make_events
from sqlalchemy import text

from migrations import upgrade
from services.scoring.engine.handlers import process_batch
from services.scoring.engine.retention import DedupRetention
from services.scoring.kpi.measure import Measure
from shared.db import create_engine, create_sessionmaker, session_scope
from shared.embedded import EmbeddedPostgres
from shared.events import decode_event
from shared.settings import load_settings

TABLES = ("processed_events", "kpi_facts", "kpi_daily", "ticket_states", "training_sessions")
SIZE = """
SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size(CAST(:t AS regclass)))
FROM pg_partition_tree(CAST(:t AS regclass))
"""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--retention-days", type=int, default=90)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-storage-"))
    pg = EmbeddedPostgres(home / "pg")
    pg.start()
    try:
        url = pg.create_database(f"bench_{uuid.uuid4().hex[:6]}")
        await asyncio.to_thread(upgrade, url, "head")
        engine = create_engine(url, pool_size=2)
        sm = create_sessionmaker(engine)
        settings = load_settings(dedup_retention_days=args.retention_days)
        await DedupRetention(settings, sm).rotate()  # an open generation, as in service
        events = [decode_event(value) for _, value in make_events(args.events, 7, "st")]
        measure = Measure(ZoneInfo("Asia/Shanghai"))
        applied = 0
        for i in range(0, len(events), 4000):
            async with session_scope(sm) as session:
                result = await process_batch(session, events[i : i + 4000], measure=measure)
            applied += result.applied
        async with sm() as session:
            await session.execute(text("COMMIT"))
            for t in TABLES:
                await session.execute(text(f"VACUUM ANALYZE {t}"))
            sizes = {
                t: int((await session.execute(text(SIZE), {"t": t})).scalar_one()) for t in TABLES
            }
            counts = {
                t: (await session.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                for t in TABLES
            }
        await engine.dispose()
        print(
            f"{len(events)} messages, {applied} applied events, {counts['ticket_states']} tickets"
        )
        for t in TABLES:
            print(
                f"{t:18} {counts[t]:>9} rows {sizes[t] / 1e6:8.1f} MB  "
                f"{sizes[t] / applied:6.0f} B/event  {sizes[t] / applied:6.0f} MB per million "
                f"events  {sizes[t] / max(counts[t], 1):6.0f} B/row"
            )
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
