"""Where the scoring consumer's time goes: per-event µs by stage on the `make bench` workload.

Usage: .venv/bin/python bench/profile_scoring.py [--events 100000] [--parallel 1] [--no-stages]
       py-spy record --format raw -o /tmp/scoring.txt -- .venv/bin/python bench/profile_scoring.py
           --no-stages   (then: bench/profile_scoring.py --collapse /tmp/scoring.txt)

Runs the real scoring consumer (bench_scoring.scoring_run, one process, committing to an
embedded PostgreSQL) over the messages `make bench` uses (make_events(n, seed=1)), with the
engine's functions wrapped by timers from outside (nothing in services/ changes): each stage's
exclusive wall time (time inside it minus time inside stages it calls) divided by the events.
With ``--parallel 1`` (the default) one transaction runs at a time, so stages do not overlap
and wall time is attributable; database stages include the round trip and PostgreSQL's work.
The wrappers cost about 1 µs per wrapped call (~4 per event), counted in their stages.

``--collapse FILE`` instead sums a py-spy raw profile (CPU samples of this process, idle
excluded) into the same stages, by the innermost stage function on each stack.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import os
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_scoring
from sqlalchemy.ext.asyncio import AsyncSession

from migrations import upgrade
from services.scoring.engine import consumer as consumer_mod
from services.scoring.engine import handlers, outbox, repository
from services.scoring.kpi import apply as apply_mod
from services.scoring.kpi.ticket import TicketState
from shared.embedded import EmbeddedBroker, EmbeddedPostgres
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics

# (stage, module or class, attribute): what is timed. Order is the order of the report.
STAGES: list[tuple[str, Any, str]] = [
    ("kafka fetch (getmany)", None, "getmany"),
    ("decode (decode_event)", consumer_mod, "decode_event"),
    ("record fingerprint", consumer_mod, "fingerprint"),
    ("begin (session, BEGIN)", handlers, "raw_connection"),
    ("offsets: lock", repository, "lock_offsets"),
    ("offsets: store", repository, "store_offsets"),
    ("dedup: payload hash", handlers, "payload_hash"),
    ("dedup: claim event ids", repository, "claim_events"),
    ("dedup: stored hashes", repository, "stored_hashes"),
    ("route", handlers, "route"),
    ("state load/lock", repository, "lock_states"),
    ("apply (state machine)", handlers, "apply_events"),
    ("state decode (from_json)", TicketState, "from_json"),
    ("state encode (storable)", apply_mod, "storable"),
    ("contributions", apply_mod, "ticket_contributions_and_issues"),
    ("contributions", apply_mod, "simple_contributions"),
    ("contributions", apply_mod, "training_contributions"),
    ("contributions", apply_mod, "diff_contributions"),
    ("deltas (contribute, settle)", apply_mod.Deltas, "contribute"),
    ("deltas (contribute, settle)", apply_mod.Deltas, "settle"),
    ("state save", repository, "save_states"),
    ("specialists directory", repository, "ensure_specialists"),
    ("DB writes: kpi_daily upsert", repository, "add_daily"),
    ("ledger: kpi_facts upsert", repository, "add_facts"),
    ("data-quality issues", repository, "set_issues"),
    ("outbox enqueue", outbox, "enqueue_scores"),
    ("commit", AsyncSession, "commit"),
    ("advisory Kafka commit", consumer_mod.ScoringConsumer, "_advise_kafka"),
]

# For --collapse: function names (as py-spy prints them) of each stage, innermost wins.
SPY_FUNCTIONS: dict[str, str] = {
    "getmany": "kafka fetch (getmany)",
    "_fetch_requests_routine": "kafka fetch (getmany)",
    "decode_event": "decode (decode_event)",
    "fingerprint": "record fingerprint",
    "raw_connection": "begin (session, BEGIN)",
    "lock_offsets": "offsets: lock",
    "store_offsets": "offsets: store",
    "payload_hash": "dedup: payload hash",
    "claim_events": "dedup: claim event ids",
    "stored_hashes": "dedup: stored hashes",
    "route": "route",
    "lock_states": "state load/lock",
    "apply_events": "apply (state machine)",
    "from_json": "state decode (from_json)",
    "storable": "state encode (storable)",
    "ticket_contributions_and_issues": "contributions",
    "simple_contributions": "contributions",
    "training_contributions": "contributions",
    "diff_contributions": "contributions",
    "contribute": "deltas (contribute, settle)",
    "settle": "deltas (contribute, settle)",
    "save_states": "state save",
    "ensure_specialists": "specialists directory",
    "add_daily": "DB writes: kpi_daily upsert",
    "add_facts": "ledger: kpi_facts upsert",
    "set_issues": "data-quality issues",
    "enqueue_scores": "outbox enqueue",
    "commit": "commit",
    "_advise_kafka": "advisory Kafka commit",
}


class Timers:
    """Exclusive wall time per stage: a stack of open stages, children subtracted."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        # Per task (background tasks such as the health reporter commit too): per open
        # stage, the time spent in the stages it called.
        self._stacks: dict[int, list[list[float]]] = defaultdict(list)

    def _stack(self) -> list[list[float]]:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        return self._stacks[id(task)]

    def enter(self) -> None:
        self._stack().append([0.0])

    def leave(self, stage: str, elapsed: float) -> None:
        stack = self._stack()
        children = stack.pop()[0]
        self.seconds[stage] += elapsed - children
        self.calls[stage] += 1
        if stack:
            stack[-1][0] += elapsed

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                self.enter()
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.leave(stage, time.perf_counter() - started)

            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter()
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave(stage, time.perf_counter() - started)

        return timed


def install(timers: Timers) -> None:
    from aiokafka import AIOKafkaConsumer

    for stage, owner, name in STAGES:
        target = AIOKafkaConsumer if owner is None else owner
        raw = inspect.getattr_static(target, name)
        if isinstance(raw, classmethod):
            setattr(target, name, classmethod(timers.wrap(stage, raw.__func__)))
        else:
            setattr(target, name, timers.wrap(stage, getattr(target, name)))


async def run(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="kpi-profile-"))
    pg = EmbeddedPostgres(home / "pg")
    broker = EmbeddedBroker(log_path=home / "broker.log")
    pg.start()
    broker.start()
    try:
        topics = Topics(f"bp{uuid.uuid4().hex[:6]}.")
        await ensure_topics(broker.bootstrap, 6, topics.all)
        messages = bench_scoring.make_events(args.events, seed=1, tag="s")
        count = len(messages)
        await bench_scoring.produce(broker.bootstrap, topics.events, messages)
        del messages
        url = pg.create_database(f"profile_{uuid.uuid4().hex[:6]}")
        await asyncio.to_thread(upgrade, url)
        settings = load_settings(
            database_url=url,
            kafka_bootstrap=broker.bootstrap,
            topic_prefix=topics.prefix,
            timezone="Asia/Shanghai",
        )
        timers = Timers()
        if args.stages:
            install(timers)
        load0 = os.getloadavg()[0]
        started = time.perf_counter()
        res = await bench_scoring.scoring_run(
            settings, url, count, args.batch, False, args.parallel
        )
        wall = time.perf_counter() - started
        print(
            f"scoring x1 (parallel {args.parallel}): {res['events_per_s']:,.0f} events/s, "
            f"{1e6 / res['events_per_s']:.1f} µs/event wall; consumer CPU "
            f"{res['cpu_us_per_event']:.1f} µs/event, PostgreSQL + broker CPU "
            f"{res['children_us_per_event']:.1f} µs/event; load {load0:.1f} -> "
            f"{os.getloadavg()[0]:.1f}"
        )
        if args.stages:
            report(dict(timers.seconds), dict(timers.calls), count, wall)
    finally:
        broker.stop()
        pg.stop()


def report(seconds: dict[str, float], calls: dict[str, int], events: int, wall: float) -> None:
    """A markdown table of µs per event by stage (wall, exclusive), in STAGES order."""
    print("\n| stage | µs/event | share | calls |\n|---|---|---|---|")
    order = list(dict.fromkeys(s for s, _, _ in STAGES))
    total = sum(seconds.values())
    for stage in order:
        if stage in seconds:
            us = 1e6 * seconds[stage] / events
            print(f"| {stage} | {us:.1f} | {seconds[stage] / wall:.0%} | {calls[stage]:,} |")
    rest = wall - total
    print(f"| other (loop, session, gather, unwrapped) | {1e6 * rest / events:.1f} | "
          f"{rest / wall:.0%} | |")  # fmt: skip
    print(f"| **total wall** | {1e6 * wall / events:.1f} | 100% | |")


def collapse(path: Path) -> None:
    """Sum a py-spy ``--format raw`` profile (``frame;frame;... count`` lines) by stage."""
    by_stage: dict[str, int] = defaultdict(int)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        stage = "other"
        for frame in reversed(stack.split(";")):
            name = frame.split(" (", 1)[0].strip()
            if name in SPY_FUNCTIONS:
                stage = SPY_FUNCTIONS[name]
                break
        by_stage[stage] += count
    print(f"{total} CPU samples\n\n| stage | share of CPU samples |\n|---|---|")
    for stage, count in sorted(by_stage.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {count / total:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--no-stages", dest="stages", action="store_false")
    parser.add_argument("--collapse", type=Path, help="sum a py-spy raw profile by stage")
    args = parser.parse_args()
    if args.collapse:
        collapse(args.collapse)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
