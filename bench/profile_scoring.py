"""Where the scoring consumer's time goes: per-event µs by stage on the `make bench` workload.

Usage: .venv/bin/python bench/profile_scoring.py [--events 100000] [--parallel 1] [--no-stages]
       [--py-spy /tmp/scoring.txt]   then: bench/profile_scoring.py --collapse /tmp/scoring.txt

Runs the real scoring consumer (bench_scoring.scoring_run, one process, committing to an
embedded PostgreSQL) over the messages `make bench` uses (make_events(n, seed=1)), with the
engine's functions wrapped by timers from outside (nothing in services/ changes): each stage's
exclusive wall time (time inside it minus time inside stages it calls) divided by the events.
With ``--parallel 1`` (the default) one transaction runs at a time, so stages do not overlap
and wall time is attributable; database stages include the round trip and PostgreSQL's work.
The wrappers cost about 1 µs per wrapped call (~4 per event), counted in their stages.

``--py-spy FILE`` samples the scoring run (only) with py-spy (CPU samples, idle excluded);
``--collapse FILE`` sums such a raw profile into the same stages, by the innermost stage
function on each stack (what no stage function covers: by library).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import os
import signal
import sys
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
from services.scoring.engine import breakdown_writes, handlers, outbox, repository
from services.scoring.engine import consumer as consumer_mod
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
    ("DB writes: kpi_channel_daily upsert", breakdown_writes, "add_channels"),
    ("DB writes: kpi_time_buckets upsert", breakdown_writes, "add_buckets"),
    ("legacy survey check", breakdown_writes, "existing_facts"),
    ("data-quality issues", repository, "set_issues"),
    ("outbox enqueue", outbox, "enqueue_scores"),
    ("commit", AsyncSession, "commit"),
    ("advisory Kafka commit", consumer_mod.ScoringConsumer, "_advise_kafka"),
]

# For --collapse: function names (as py-spy prints them) of each stage, innermost wins.
SPY_FUNCTIONS: dict[str, str] = {
    "AIOKafkaConsumer.getmany": "kafka fetch (getmany)",
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
    "TicketState.from_json": "state decode (from_json)",
    "storable": "state encode (storable)",
    "ticket_contributions_and_issues": "contributions",
    "simple_contributions": "contributions",
    "training_contributions": "contributions",
    "diff_contributions": "contributions",
    "Deltas.contribute": "deltas (contribute, settle)",
    "Deltas.settle": "deltas (contribute, settle)",
    "save_states": "state save",
    "ensure_specialists": "specialists directory",
    "add_daily": "DB writes: kpi_daily upsert",
    "add_facts": "ledger: kpi_facts upsert",
    "add_channels": "DB writes: kpi_channel_daily upsert",
    "add_buckets": "DB writes: kpi_time_buckets upsert",
    "existing_facts": "legacy survey check",
    "set_issues": "data-quality issues",
    "enqueue_scores": "outbox enqueue",
    "AsyncSession.commit": "commit",
    "ScoringConsumer._advise_kafka": "advisory Kafka commit",
}


class Timers:
    """Exclusive wall time per stage: a stack of open stages, children subtracted."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        # Per task (background tasks such as the health reporter commit too): per open
        # stage, the time spent in the stages it called.
        self._stacks: dict[int, list[list[float]]] = defaultdict(list)
        self.armed = False

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

    def arm(self) -> None:
        """Forget what was timed before the first record (start-up, the group join)."""
        if not self.armed:
            self.armed = True
            self.seconds.clear()
            self.calls.clear()

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

        first = stage.startswith("decode")

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if first and not self.armed:
                self.arm()
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
        spy = None
        if args.py_spy:
            # Sampling only the scoring run: not the event generation or the migrations.
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                str(os.getpid()), "--format", "raw", "--rate", "250", "--nonblocking",
                "--output", str(args.py_spy),
            )  # fmt: skip
            await asyncio.sleep(1.0)
        res = await bench_scoring.scoring_run(
            settings, url, count, args.batch, False, args.parallel
        )
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await asyncio.wait_for(spy.wait(), 30)
        # The run's own clock: from the first batch to the last (start-up excluded).
        wall = count / res["events_per_s"]
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


def _spy_stage(stack: str) -> str:
    """The stage of one sampled stack: the innermost stage function, else by library."""
    for frame in reversed(stack.split(";")):
        name = frame.split(" (", 1)[0].strip()
        if name in SPY_FUNCTIONS:
            return SPY_FUNCTIONS[name]
    if "aiokafka/" in stack:
        return "kafka client (fetcher task, protocol; unattributed)"
    if "asyncpg/" in stack or "sqlalchemy/" in stack:
        return "DB driver and session (unattributed)"
    if "ScoringConsumer" in stack or "services/scoring" in stack or "shared/" in stack:
        return "engine, other (positions, split, results)"
    if "selectors.py" in stack:
        return "event loop: waiting in select"
    if "asyncio/" in stack:
        return "event loop: scheduling"
    return "other (bench harness, threads)"


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
        by_stage[_spy_stage(stack)] += count
    print(f"{total} CPU samples\n\n| stage | share of CPU samples |\n|---|---|")
    for stage, count in sorted(by_stage.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {count / total:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--no-stages", dest="stages", action="store_false")
    parser.add_argument(
        "--py-spy", type=Path, help="also sample the scoring run with py-spy into this raw file"
    )
    parser.add_argument("--collapse", type=Path, help="sum a py-spy raw profile by stage")
    args = parser.parse_args()
    if args.collapse:
        collapse(args.collapse)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
