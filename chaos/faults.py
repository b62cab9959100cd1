"""Fault schedule and injection: SIGKILL/restart, SIGSTOP/SIGCONT, PostgreSQL restart and
statement timeouts, receiver trouble and downtime, broker reset, topic re-created, poison."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from chaos.generator import Poison
from chaos.monitor import Monitor
from chaos.receiver import ChaosReceiver
from chaos.stack import LAYOUT, PARTITIONS, ChaosStack
from chaos.stream import Streamer
from shared.kafka import create_producer

logger = logging.getLogger("chaos.faults")


@dataclass
class Fault:
    # kill | pause | pg_restart | pg_statement_timeout | webhook_fail | webhook_hang |
    # receiver_down | broker_reset | topic_recreate | poison
    kind: str
    target: str
    hold: float = 0.0  # seconds the fault lasts (pauses, receiver trouble, down time)
    at: float = 0.0  # seconds after the stream started, planned
    started: float | None = None
    ended: float | None = None
    recovery_s: float | None = None
    error: str | None = None
    # What the fault-specific checks found (quiesce time, incidents, timeouts seen, …).
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def unnoticed(self) -> bool:
        """A fault whose effect the platform must show and did not (or never bit)."""
        if self.kind in RESETS:
            return not self.detail.get("log_reset_incident")
        if self.kind == "pg_statement_timeout":
            return not self.detail.get("statement_timeouts_logged")
        return False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


RESETS = ("broker_reset", "topic_recreate")
# Receiver downtime of the full campaign: ten minutes with production retry settings.
RECEIVER_DOWN_S = 600.0
RECEIVER_DOWN_SHORT_S = 20.0


@dataclass
class Plan:
    faults: list[Fault] = field(default_factory=list)


def plan(rng: random.Random, duration: float, short: bool, only: tuple[str, ...] = ()) -> Plan:
    """Every fault kind once (services each killed once), spread over the stream.

    ``receiver_down`` runs beside the others from early on; the other receiver faults
    come after it (down would mask them). ``only`` keeps the faults named ``kind`` or
    ``kind:target`` (to reproduce one fault without the whole campaign).
    """
    pause = (4.0, 6.0) if short else (20.0, 60.0)
    trouble = (4.0, 6.0) if short else (20.0, 45.0)
    timeout_hold = (4.0, 6.0) if short else (20.0, 40.0)
    faults: list[Fault] = []
    for name, count in LAYOUT:
        for i in range(count):
            faults.append(Fault("kill", f"{name}-{i + 1}", hold=rng.uniform(0.5, 3.0)))
    faults += [
        Fault("pause", "broker", hold=rng.uniform(*pause)),
        Fault("pause", "postgres", hold=rng.uniform(*pause)),
        Fault("pg_restart", "postgres", hold=rng.uniform(0.5, 2.0)),
        Fault("webhook_fail", "receiver", hold=rng.uniform(*trouble)),
        Fault("webhook_hang", "receiver", hold=rng.uniform(*trouble)),
        Fault("pg_statement_timeout", "postgres", hold=rng.uniform(*timeout_hold)),
        Fault("broker_reset", "broker"),
        Fault("topic_recreate", "kpi.events"),
        Fault("poison", "kpi.events"),
    ]
    if not short:
        # A zombie: paused past its session, its partitions move, then it wakes up.
        faults.append(Fault("pause", "scoring-2", hold=rng.uniform(15.0, 25.0)))
        faults.append(Fault("poison", "kpi.events"))
    rng.shuffle(faults)
    if only:
        faults = [f for f in faults if _chosen(f, only)]
    webhook = [f for f in faults if f.kind.startswith("webhook")]
    faults = [f for f in faults if not f.kind.startswith("webhook")] + webhook
    # Start times spread evenly, leaving room for the fault to end inside the stream.
    slot = duration / (len(faults) + 1)
    for i, f in enumerate(faults):
        f.at = slot * (i + 0.5) + rng.uniform(0, slot * 0.3)
    # Early in the full campaign (ten minutes must end before the other receiver faults),
    # a third in when short (alerts must be owed while it is down).
    down = Fault("receiver_down", "receiver", hold=RECEIVER_DOWN_S, at=slot * 0.25)
    if short:
        down = Fault("receiver_down", "receiver", hold=RECEIVER_DOWN_SHORT_S, at=duration * 0.3)
    if not only or _chosen(down, only):
        faults.insert(0, down)
    return Plan(faults)


def _chosen(fault: Fault, only: tuple[str, ...]) -> bool:
    return fault.kind in only or f"{fault.kind}:{fault.target}" in only


class Injector:
    """Runs a plan sequentially against the stack; measures recovery to zero lag.

    ``receiver_down`` runs beside the rest (it lasts minutes and touches only the receiver).
    """

    def __init__(
        self,
        stack: ChaosStack,
        receiver: ChaosReceiver,
        monitor: Monitor,
        recovery_timeout: float,
        say: Any = print,
        streamer: Streamer | None = None,
        poison: list[list[Poison]] | None = None,
    ) -> None:
        self.stack = stack
        self.receiver = receiver
        self.monitor = monitor
        self.recovery_timeout = recovery_timeout
        # After receiver trouble a delivery may wait a whole backoff cap before its next try.
        self.delivery_timeout = max(recovery_timeout, stack.delivery_settle_seconds())
        self.say = say
        self.streamer = streamer
        self.poison = list(poison or [])
        # Every poison record produced: marker -> (kind, raw bytes, partition, offset).
        self.poison_sent: dict[str, tuple[str, bytes, int, int]] = {}
        # receiver_down, and the wait for owed deliveries after any receiver fault (it may
        # take a whole production backoff): beside the sequence, awaited at its end.
        self._beside: list[asyncio.Task[None]] = []

    async def run(self, the_plan: Plan, t0: float) -> None:
        for fault in the_plan.faults:
            await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic()))
            if fault.kind == "receiver_down":
                self._beside.append(asyncio.create_task(self._guarded(fault, t0)))
            else:
                await self._guarded(fault, t0)
        await asyncio.gather(*self._beside)

    async def _guarded(self, fault: Fault, t0: float) -> None:
        try:
            await self.inject(fault, t0)
        except Exception as exc:
            fault.error = repr(exc)
            logger.exception("fault %s %s failed", fault.kind, fault.target)

    async def inject(self, f: Fault, t0: float) -> None:
        f.started = time.monotonic() - t0
        self.say(f"[{f.started:6.1f}s] fault: {f.kind} {f.target} ({f.hold:.1f}s)")
        stack = self.stack
        if f.kind == "kill":
            await asyncio.to_thread(stack.kill, f.target)
            await asyncio.sleep(f.hold)
            await asyncio.to_thread(stack.restart, f.target)
        elif f.kind == "pause":
            stack.pause(f.target, signal.SIGSTOP)
            await asyncio.sleep(f.hold)
            stack.pause(f.target, signal.SIGCONT)
        elif f.kind == "pg_restart":
            await asyncio.to_thread(stack.restart_postgres)
        elif f.kind == "pg_statement_timeout":
            await self._statement_timeout(f)
        elif f.kind in ("webhook_fail", "webhook_hang"):
            self.receiver.mode = "fail" if f.kind == "webhook_fail" else "hang"
            await asyncio.sleep(f.hold)
            self.receiver.mode = "ok"
        elif f.kind == "receiver_down":
            self.receiver.down = True
            try:
                await asyncio.sleep(f.hold)
                rows = await self.monitor.db_rows(
                    "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')"
                )
                f.detail["owed_when_back"] = None if rows is None else int(rows[0][0])
            finally:
                self.receiver.down = False
        elif f.kind in RESETS:
            await self._reset(f)
        elif f.kind == "poison":
            await self._poison(f)
        f.ended = time.monotonic() - t0
        if f.kind.startswith("webhook"):
            self._beside.append(asyncio.create_task(self._receiver_recovered(f, t0)))
            return
        if f.kind == "receiver_down":
            await self._receiver_recovered(f, t0)
            return
        f.recovery_s = await self.monitor.zero_lag(time.monotonic() + self.recovery_timeout)
        self._recovered(f, t0)

    def _recovered(self, f: Fault, t0: float) -> None:
        shown = "not recovered" if f.recovery_s is None else f"{f.recovery_s:.1f}s"
        extra = f" {f.detail}" if f.detail else ""
        self.say(f"[{time.monotonic() - t0:6.1f}s]   {f.kind} recovered: {shown}{extra}")

    # -- statement_timeout ---------------------------------------------------------------

    async def _statement_timeout(self, f: Fault) -> None:
        """Every new session of the database gets statement_timeout = 1ms for a while."""
        before = self._logged(b"statement timeout")
        conn = await asyncpg.connect(self.stack.dsn, server_settings={"statement_timeout": "0"})
        try:
            db = await conn.fetchval("SELECT current_database()")
            name = '"' + str(db).replace('"', '""') + '"'
            await conn.execute(f"ALTER DATABASE {name} SET statement_timeout = '1ms'")
            try:
                await self._terminate_sessions(conn)
                await asyncio.sleep(f.hold)
            finally:
                await conn.execute(f"ALTER DATABASE {name} RESET statement_timeout")
                await self._terminate_sessions(conn)
        finally:
            await conn.close()
        f.detail["statement_timeouts_logged"] = self._logged(b"statement timeout") - before

    @staticmethod
    async def _terminate_sessions(conn: asyncpg.Connection) -> None:
        # Sessions read the database default when they start: make every one start again.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )

    def _logged(self, needle: bytes) -> int:
        return sum(p.read_bytes().count(needle) for p in self.stack.log_paths())

    # -- broker reset / topic re-created ---------------------------------------------------

    async def _reset(self, f: Fault) -> None:
        """Quiesce (stream paused, every consumer at zero lag), replace the log(s), resume."""
        assert self.streamer is not None
        started = time.monotonic()
        await self.streamer.pause()
        try:
            quiet = await self.monitor.wait(self.monitor.quiet, self.recovery_timeout)
            f.detail["quiesce_s"] = round(time.monotonic() - started, 1)
            if not quiet:
                raise RuntimeError("pipeline did not reach zero lag with the stream paused")
            incidents = await self.monitor.incidents("log_reset")
            if incidents is None:
                raise RuntimeError("cannot read platform_incidents")
            topics = self.stack.topics
            if f.kind == "broker_reset":
                # Services stopped (SIGSTOP) while the fresh broker gets its topics: it
                # would create any topic a client merely asks about, with 4 partitions.
                services = [k for k, svc in self.stack.services.items() if svc.proc is not None]
                for key in services:
                    self.stack.pause(key, signal.SIGSTOP)
                try:
                    await asyncio.to_thread(self.stack.reset_broker)
                    await self.stack.create_topics()
                finally:
                    for key in services:
                        self.stack.pause(key, signal.SIGCONT)
                await self.monitor.restart_tail(list(topics.all))
            else:
                # A connector replaying the history: the new log passes the old positions
                # at once (new timestamps), which only the anchor check can tell apart.
                history = [
                    r
                    for r in await self._read_all(topics.events)
                    if (r[1] or b"").decode(errors="replace") not in self.poison_sent
                ]
                await self.stack.recreate_topic(topics.events)
                await self.stack.create_topics([topics.events])
                await self.monitor.restart_tail([topics.events])
                await self._produce(topics.events, history)
                f.detail["refilled"] = len(history)
        finally:
            self.streamer.resume()
        noticed = await self.monitor.wait(
            lambda: self._more_incidents(incidents), self.recovery_timeout
        )
        f.detail["log_reset_incident"] = noticed

    async def _more_incidents(self, before: int) -> bool:
        now = await self.monitor.incidents("log_reset")
        return now is not None and now > before

    async def _read_all(self, topic: str) -> list[tuple[int, bytes | None, bytes]]:
        """Every record of ``topic`` as (partition, key, value), in offset order."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        out: list[tuple[int, bytes | None, bytes]] = []
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = self.monitor.topic_ends(topic)
            position = dict.fromkeys(ends, 0)
            deadline = time.monotonic() + self.recovery_timeout
            while any(position[k] < end for k, end in ends.items()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not read {topic} up to {ends}: at {position}")
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for tp, recs in batch.items():
                    for r in recs:
                        out.append((tp.partition, r.key, r.value or b""))
                    if recs:
                        position[(tp.topic, tp.partition)] = recs[-1].offset + 1
        finally:
            await consumer.stop()
        return out

    async def _produce(
        self, topic: str, records: list[tuple[int, bytes | None, bytes]]
    ) -> list[tuple[int, int]]:
        """Produce (acked) to explicit partitions; returns (partition, offset) per record."""
        producer = create_producer(self.stack.bootstrap, client_id="chaos-faults", linger_ms=10)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value, key=key, partition=partition)
                for partition, key, value in records
            ]
            metas = [await fut for fut in futures]
        finally:
            await producer.stop()
        return [(m.partition, m.offset) for m in metas]

    # -- poison ----------------------------------------------------------------------------

    async def _poison(self, f: Fault) -> None:
        """One record of every poison kind straight to kpi.events, mid-stream."""
        batch = self.poison.pop(0) if self.poison else []
        topic = self.stack.topics.events
        records: list[tuple[int, bytes | None, bytes]] = [
            (zlib.crc32(p.marker.encode()) % PARTITIONS, p.marker.encode(), p.raw) for p in batch
        ]
        placed = await self._produce(topic, records)
        for p, (partition, offset) in zip(batch, placed, strict=True):
            self.poison_sent[p.marker] = (p.kind, p.raw, partition, offset)
        f.detail["records"] = len(batch)

    async def _receiver_recovered(self, f: Fault, t0: float) -> None:
        try:
            f.recovery_s = await self._deliveries_recovered(
                time.monotonic() + self.delivery_timeout
            )
            failed = await self.monitor.db_rows(
                "SELECT count(*) FROM deliveries WHERE status = 'failed'"
            )
            f.detail["deliveries_failed"] = None if failed is None else int(failed[0][0])
        except Exception as exc:
            f.error = repr(exc)
            logger.exception("waiting for deliveries after %s failed", f.kind)
        self._recovered(f, t0)

    async def _deliveries_recovered(self, deadline: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() < deadline:
            if self.receiver.down or self.receiver.mode != "ok":
                # Receiver trouble again: owed deliveries may rightly wait a backoff more.
                deadline = max(deadline, time.monotonic() + self.delivery_timeout)
            rows = await self.monitor.db_rows(
                "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')"
            )
            if rows is not None and rows[0][0] == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        return None
