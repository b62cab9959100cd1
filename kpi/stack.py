"""Starts and supervises the local platform: embedded servers and the three services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    free_port,
    port_is_free,
    stop_process,
)
from shared.kafka import ensure_topics
from shared.kafka_settings import PLAINTEXT, KafkaSecurity, KafkaSecuritySettings
from shared.topics import Topics

SERVICES = ("ingest", "scoring", "notify")
DEFAULT_PORTS = {"ingest": 8001, "scoring": 8002, "notify": 8003}
PREFERRED_PG_PORT = 55432
PREFERRED_BROKER_PORT = 9092

Say = Callable[[str], None]


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=12)
            self.proc = None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class LocalStack:
    """The whole platform on this machine; everything it starts, it stops."""

    home: Path
    say: Say = print
    partitions: int = 6
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    database_url: str = ""
    bootstrap: str = ""
    security: KafkaSecurity = PLAINTEXT
    admin_token: str = ""
    admin_password: str = ""
    demo: subprocess.Popen[bytes] | None = None

    def _pick_port(self, preferred: int, what: str) -> int:
        if port_is_free(preferred):
            return preferred
        port = free_port()
        self.say(f"port {preferred} for {what} is busy; using {port} instead")
        return port

    def _plaintext_env(self) -> dict[str, str]:
        # The embedded broker speaks plaintext whatever security the shell's variables ask for.
        return {} if self.broker is None else {"KPI_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}

    def start_infrastructure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        external_db = os.environ.get("KPI_DATABASE_URL")
        if external_db:
            self.database_url = external_db
            self.say("database: using KPI_DATABASE_URL")
        else:
            started = time.monotonic()
            self.postgres = EmbeddedPostgres(
                self.home / "pgdata", port=self._pick_port(PREFERRED_PG_PORT, "PostgreSQL")
            )
            self.postgres.start()
            self.database_url = self.postgres.url
            self.say(
                f"database: embedded PostgreSQL 18 on 127.0.0.1:{self.postgres.port} "
                f"(data in {self.home / 'pgdata'}, {time.monotonic() - started:.1f}s)"
            )
        external_kafka = os.environ.get("KPI_KAFKA_BOOTSTRAP")
        if external_kafka:
            self.bootstrap = external_kafka
            # The KPI_KAFKA_* security variables describe that cluster (errors name them).
            self.security = KafkaSecuritySettings().kafka_security
            self.say(f"broker: using KPI_KAFKA_BOOTSTRAP={external_kafka}")
        else:
            self.broker = EmbeddedBroker(
                port=self._pick_port(PREFERRED_BROKER_PORT, "the broker"),
                log_path=self.home / "logs" / "broker.log",
            )
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
            self.say(f"broker: embedded Tansu on {self.bootstrap} (memory only)")
        names = Topics(os.environ.get("KPI_TOPIC_PREFIX", "")).all
        factor = os.environ.get("KPI_TOPIC_REPLICATION_FACTOR", "").strip()
        created = asyncio.run(
            ensure_topics(
                self.bootstrap,
                self.partitions,
                names,
                security=self.security,
                replication_factor=int(factor) if factor.isdigit() and int(factor) else None,
            )
        )
        if created:
            self.say(f"topics created ({self.partitions} partitions): {', '.join(created)}")

    def migrate(self) -> None:
        from migrations import upgrade

        upgrade(self.database_url)
        self.say("database schema: migrated to head")

    def _admin_token(self) -> str:
        from_env = os.environ.get("KPI_BOOTSTRAP_ADMIN_TOKEN")
        if from_env:
            return from_env
        path = self.home / "admin-token"
        if path.exists():
            return path.read_text().strip()
        token = "kpi_admin_" + secrets.token_urlsafe(24)
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

    def _admin_password(self) -> str:
        """The first admin's password: KPI_BOOTSTRAP_ADMIN_PASSWORD, else .kpi/admin-password
        (made on the first start). Scoring creates the user 'admin' with it while no user
        exists; changed later in the dashboard, the file no longer tells it."""
        from_env = os.environ.get("KPI_BOOTSTRAP_ADMIN_PASSWORD")
        if from_env:
            return from_env
        path = self.home / "admin-password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(15)  # 20 characters, ~120 bits
        path.write_text(password + "\n")
        path.chmod(0o600)
        return password

    def start_services(self, names: tuple[str, ...] = SERVICES) -> None:
        self.admin_token = self._admin_token()
        self.admin_password = self._admin_password()
        base_env = {
            **os.environ,
            "KPI_DATABASE_URL": self.database_url,
            "KPI_KAFKA_BOOTSTRAP": self.bootstrap,
            "KPI_BOOTSTRAP_ADMIN_TOKEN": self.admin_token,
            "KPI_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
            "KPI_TOPIC_PARTITIONS": str(self.partitions),
            **self._plaintext_env(),
        }
        # A local stack is where people try channels against a receiver on this machine
        # (`kpi demo --webhook http://127.0.0.1:…`); an explicit setting still wins.
        if "KPI_NOTIFY_ALLOW_PRIVATE_TARGETS" not in base_env:
            base_env["KPI_NOTIFY_ALLOW_PRIVATE_TARGETS"] = "true"
            if "notify" in names:
                self.say(
                    "notify: channels may reach loopback and private addresses on this local "
                    "stack (KPI_NOTIFY_ALLOW_PRIVATE_TARGETS=false refuses them)"
                )
        ports: dict[str, int] = {}
        for name in names:
            env_name = f"KPI_{name.upper()}_PORT"
            preferred = int(os.environ.get(env_name, DEFAULT_PORTS[name]))
            ports[name] = self._pick_port(preferred, f"the {name} service")
        for name in names:
            env = {**base_env, **{f"KPI_{n.upper()}_PORT": str(p) for n, p in ports.items()}}
            env.setdefault(
                "KPI_PUBLIC_URL",
                f"http://127.0.0.1:{ports['scoring']}" if "scoring" in ports else "",
            )
            svc = ServiceProcess(name, ports[name], self.home / "logs" / f"{name}.log", env)
            svc.start()
            self.services[name] = svc

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.services)
        with httpx.Client(timeout=2) as client:
            while pending and time.monotonic() < deadline:
                for name in sorted(pending):
                    svc = self.services[name]
                    if svc.proc is not None and svc.proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with code {svc.proc.returncode} while starting; "
                            f"last log lines ({svc.log_path}):\n{svc.tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{svc.url}/readyz").status_code == 200:
                            pending.discard(name)
                if pending:
                    time.sleep(0.2)
        if pending:
            details = "\n".join(
                f"--- {n} ({self.services[n].log_path}):\n{self.services[n].tail()}"
                for n in sorted(pending)
            )
            raise RuntimeError(
                f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}\n{details}"
            )

    def supervise_once(self) -> list[str]:
        """Restart services that died; returns what was restarted."""
        restarted = []
        for svc in self.services.values():
            if svc.proc is not None and svc.proc.poll() is not None:
                code = svc.proc.returncode
                svc.restarts += 1
                self.say(f"{svc.name} exited with code {code}; restarting (see {svc.log_path})")
                svc.start()
                restarted.append(svc.name)
        return restarted

    def start_demo(self, args: list[str]) -> Path:
        """`kpi demo ARGS` against this stack as a child process (stopped first by `stop`)."""
        log_path = self.home / "logs" / "demo.log"
        env = {
            **os.environ,
            "KPI_KAFKA_BOOTSTRAP": self.bootstrap,
            "KPI_BOOTSTRAP_ADMIN_TOKEN": self.admin_token,
            **self._plaintext_env(),
            "KPI_SCORING_URL": self.services["scoring"].url,
            "KPI_NOTIFY_URL": self.services["notify"].url,
        }
        with log_path.open("ab") as log:
            self.demo = subprocess.Popen(
                [sys.executable, "-m", "kpi", "demo", "--home", str(self.home), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return log_path

    def stop(self) -> None:
        if self.demo is not None:
            stop_process(self.demo, signal.SIGTERM, timeout=10)
            self.demo = None
        for svc in reversed(list(self.services.values())):
            svc.stop()
        self.services.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
