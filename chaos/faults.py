"""Fault schedule and injection: SIGKILL/restart, SIGSTOP/SIGCONT, PostgreSQL restart, receiver."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.monitor import Monitor
from chaos.receiver import ChaosReceiver
from chaos.stack import LAYOUT, ChaosStack

logger = logging.getLogger("chaos.faults")


@dataclass
class Fault:
    kind: str  # kill | pause | pg_restart | webhook_fail | webhook_hang
    target: str
    hold: float = 0.0  # seconds the fault lasts (pauses, receiver trouble, down time)
    at: float = 0.0  # seconds after the stream started, planned
    started: float | None = None
    ended: float | None = None
    recovery_s: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    faults: list[Fault] = field(default_factory=list)


def plan(rng: random.Random, duration: float, short: bool) -> Plan:
    """Every fault kind once (services each killed once), spread over the stream."""
    pause = (4.0, 6.0) if short else (20.0, 60.0)
    trouble = (4.0, 6.0) if short else (20.0, 45.0)
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
    ]
    if not short:
        # A zombie: paused past its session, its partitions move, then it wakes up.
        faults.append(Fault("pause", "scoring-2", hold=rng.uniform(15.0, 25.0)))
    rng.shuffle(faults)
    # Start times spread evenly, leaving room for the fault to end inside the stream.
    slot = duration / (len(faults) + 1)
    for i, f in enumerate(faults):
        f.at = slot * (i + 0.5) + rng.uniform(0, slot * 0.3)
    return Plan(faults)


class Injector:
    """Runs a plan sequentially against the stack; measures recovery to zero lag."""

    def __init__(
        self,
        stack: ChaosStack,
        receiver: ChaosReceiver,
        monitor: Monitor,
        recovery_timeout: float,
        say: Any = print,
    ) -> None:
        self.stack = stack
        self.receiver = receiver
        self.monitor = monitor
        self.recovery_timeout = recovery_timeout
        # After receiver trouble a delivery may wait a whole backoff cap before its next try.
        self.delivery_timeout = max(recovery_timeout, stack.delivery_settle_seconds())
        self.say = say

    async def run(self, the_plan: Plan, t0: float) -> None:
        for fault in the_plan.faults:
            await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic()))
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
        elif f.kind in ("webhook_fail", "webhook_hang"):
            self.receiver.mode = "fail" if f.kind == "webhook_fail" else "hang"
            await asyncio.sleep(f.hold)
            self.receiver.mode = "ok"
        f.ended = time.monotonic() - t0
        if f.kind.startswith("webhook"):
            f.recovery_s = await self._deliveries_recovered(
                time.monotonic() + self.delivery_timeout
            )
        else:
            f.recovery_s = await self.monitor.zero_lag(time.monotonic() + self.recovery_timeout)
        shown = "not recovered" if f.recovery_s is None else f"{f.recovery_s:.1f}s"
        self.say(f"[{time.monotonic() - t0:6.1f}s]   recovered to zero lag: {shown}")

    async def _deliveries_recovered(self, deadline: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() < deadline:
            rows = await self.monitor.db_rows(
                "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')"
            )
            if rows is not None and rows[0][0] == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        return None
