"""The chaos stack: embedded PostgreSQL + broker, 1 ingest, 2 scoring, 2 notify processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from kpi.stack import ServiceProcess
from shared.durations import parse_duration
from shared.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, port_is_free
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import Topics

logger = logging.getLogger("chaos.stack")

ADMIN_TOKEN = "kpi_chaos_admin_" + "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e"
TIMEZONE = "Asia/Shanghai"
PARTITIONS = 6
LAYOUT = (("ingest", 1), ("scoring", 2), ("notify", 2))
# Claim polling, group join after a restart, a busy 2-core machine.
SETTLE_MARGIN = 30.0


def plain_dsn(url: str) -> str:
    """asyncpg DSN of a SQLAlchemy URL."""
    return "postgresql://" + url.split("://", 1)[1]


@dataclass
class ChaosStack:
    """Everything the harness starts; it signals only these processes (by their own PIDs)."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    topics: Topics = field(default_factory=lambda: Topics(""))
    database_url: str = ""

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    @property
    def dsn(self) -> str:
        return plain_dsn(self.database_url)

    def start_servers(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self.postgres = EmbeddedPostgres(self.home / "pgdata")
        self.postgres.start()
        self.database_url = self.postgres.url
        self.broker = EmbeddedBroker(log_path=self.home / "logs" / "broker.log")
        self.broker.start()
        from migrations import upgrade

        upgrade(self.database_url)
        asyncio.run(ensure_topics(self.bootstrap, PARTITIONS, self.topics.all))

    def overrides(self) -> dict[str, str]:
        """The KPI_* settings the harness sets besides where the servers are."""
        return {
            "KPI_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
            "KPI_TIMEZONE": TIMEZONE,
            "KPI_TOPIC_PARTITIONS": str(PARTITIONS),
            "KPI_LOG_LEVEL": "INFO",
            "KPI_LOG_FORMAT": "json",
            # Short sessions so a killed or paused member's partitions move within seconds.
            # Nothing else of notify is overridden: deliveries run with the production retry
            # budget, backoff cap, send timeout, lease, grouping and tick.
            "KPI_SCORING_SESSION_TIMEOUT_MS": "6000",
            "KPI_INGEST_SESSION_TIMEOUT_MS": "6000",
            "KPI_NOTIFY_SESSION_TIMEOUT_MS": "6000",
            # The chaos receiver listens on 127.0.0.1, refused by the default egress policy.
            "KPI_NOTIFY_ALLOW_PRIVATE_TARGETS": "true",
            **self.extra_env,
        }

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
        env.update(KPI_DATABASE_URL=self.database_url, KPI_KAFKA_BOOTSTRAP=self.bootstrap)
        env.update(self.overrides())
        return env

    def setting(self, name: str) -> float:
        """A numeric or duration setting as the services get it (override, else default)."""
        raw = self.overrides().get(f"KPI_{name.upper()}")
        return parse_duration(raw if raw is not None else Settings.model_fields[name].default)

    def delivery_settle_seconds(self) -> float:
        """How long a delivery owed after a receiver or notify fault may rightly stay owed.

        Its next retry may be a whole backoff cap away; if the notify process that claimed
        it was killed, the lease runs out first; and each of those attempts may take the
        send timeout. Waiting less would fail a correct run, so drains wait this long.
        """
        cap = self.setting("notify_retry_max_seconds")
        timeout = self.setting("notify_send_timeout")
        # The sender's lease is never shorter than two send timeouts (services/notify/sender).
        lease = max(self.setting("notify_lease_seconds"), 2 * timeout)
        return cap + lease + 2 * (timeout + 1) + SETTLE_MARGIN

    def start_services(self) -> None:
        base = self.env()
        ports = {f"{name}-{i + 1}": free_port() for name, count in LAYOUT for i in range(count)}
        scoring_port = ports["scoring-1"]
        for key, port in ports.items():
            name = key.split("-")[0]
            env = {
                **base,
                f"KPI_{name.upper()}_PORT": str(port),
                "KPI_PUBLIC_URL": f"http://127.0.0.1:{scoring_port}",
            }
            svc = ServiceProcess(name, port, self.home / "logs" / f"{key}.log", env)
            svc.start()
            self.services[key] = svc

    def wait_ready(self, names: list[str] | None = None, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names or self.services)
        with httpx.Client(timeout=2) as client:
            while pending and time.monotonic() < deadline:
                for key in sorted(pending):
                    svc = self.services[key]
                    if svc.proc is not None and svc.proc.poll() is not None:
                        raise RuntimeError(f"{key} exited while starting:\n{svc.tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{svc.url}/readyz").status_code == 200:
                            pending.discard(key)
                time.sleep(0.2)
        if pending:
            raise RuntimeError(f"not ready after {timeout:.0f}s: {sorted(pending)}")

    # -- faults (only on processes started here) ---------------------------------------

    def kill(self, key: str) -> None:
        svc = self.services[key]
        assert svc.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait(10)
        svc.proc = None

    def restart(self, key: str) -> None:
        svc = self.services[key]
        svc.restarts += 1
        svc.start()

    def pause(self, what: str, sig: int) -> None:
        """SIGSTOP/SIGCONT the broker, PostgreSQL (its whole process group) or a service."""
        if what == "broker":
            assert self.broker is not None and self.broker.pid is not None
            os.killpg(self.broker.pid, sig)
        elif what == "postgres":
            assert self.postgres is not None and self.postgres.pid is not None
            # Backends are children in the postmaster's group: pause them all.
            os.killpg(self.postgres.pid, sig)
        else:
            proc = self.services[what].proc
            assert proc is not None
            os.killpg(proc.pid, sig)

    def reset_broker(self, timeout: float = 30) -> None:
        """A fresh memory broker on the same port: every topic, record and group is gone."""
        assert self.broker is not None
        port = self.broker.port
        self.broker.stop()
        self.broker = EmbeddedBroker(port=port, log_path=self.home / "logs" / "broker.log")
        deadline = time.monotonic() + timeout
        while not port_is_free(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker port {port} still busy after {timeout:.0f}s")
            time.sleep(0.2)
        self.broker.start()

    async def create_topics(self, names: list[str] | None = None, timeout: float = 30) -> None:
        """Create the (missing) topics as the stack does at start, once the broker answers.

        The embedded broker creates a topic (4 partitions) for any client that merely asks
        for its metadata; such a topic is deleted and created again with ours.
        """
        wanted = names or list(self.topics.all)
        deadline = time.monotonic() + timeout
        while True:
            try:
                await ensure_topics(self.bootstrap, PARTITIONS, wanted)
                wrong = await self._wrong_partitions(wanted)
                if not wrong:
                    return
                logger.warning("topics auto-created with other partitions: %s", wrong)
                for name in wrong:
                    await self.recreate_topic(name, timeout)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _wrong_partitions(self, names: list[str]) -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="chaos-admin")
        await admin.start()
        try:
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
        return [t["topic"] for t in described if len(t["partitions"]) != PARTITIONS]

    async def recreate_topic(self, name: str, timeout: float = 30) -> None:
        """Delete a topic and create it again with the same partitions."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="chaos-admin")
        await admin.start()
        try:
            await admin.delete_topics([name])
            deadline = time.monotonic() + timeout
            while name in await admin.list_topics():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} still listed {timeout:.0f}s after its deletion")
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
        await ensure_topics(self.bootstrap, PARTITIONS, [name])

    def restart_postgres(self) -> None:
        assert self.postgres is not None
        self.postgres.stop()
        self.postgres.start()

    def pids(self) -> dict[str, int]:
        out = {k: s.proc.pid for k, s in self.services.items() if s.proc is not None}
        if self.broker is not None and self.broker.pid is not None:
            out["broker"] = self.broker.pid
        if self.postgres is not None and self.postgres.pid is not None:
            out["postgres"] = self.postgres.pid
        return out

    def log_paths(self) -> list[Path]:
        return sorted((self.home / "logs").glob("*.log"))

    def stop(self) -> None:
        for svc in self.services.values():
            svc.stop()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
