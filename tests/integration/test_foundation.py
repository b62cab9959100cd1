"""Foundation: migrations, readiness against real dependencies, SIGTERM, auth, CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import ApiToken, Authenticator, Principal, Role, hash_token, issue_token, require
from shared.db import session_scope
from shared.directory import Team
from shared.embedded import EmbeddedBroker, EmbeddedPostgres
from tests.service_helpers import ADMIN_TOKEN, service_env, start_service, wait_status


async def test_migrations_create_foundation_tables(clean_db: AsyncEngine) -> None:
    async with clean_db.connect() as conn:
        tables = set(
            (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'")))
            .scalars()
            .all()
        )
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert {"teams", "specialists", "api_tokens", "alembic_version"} <= tables
    assert version is not None


@pytest.mark.parametrize("service", ["ingest", "scoring", "notify"])
def test_service_ready_and_clean_sigterm(
    service: str, database_url: str, bootstrap: str, tmp_path: Path
) -> None:
    svc = start_service(service, service_env(database_url, bootstrap), tmp_path)
    try:
        body = wait_status(f"{svc.url}/readyz", 200).json()
        assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
        assert all(state == "ok" for state in body["checks"].values())
        assert httpx.get(f"{svc.url}/healthz").json()["status"] == "ok"
        assert "kpi_ready" in httpx.get(f"{svc.url}/metrics").text
        assert svc.proc is not None
        started = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        code = svc.proc.wait(timeout=10)
        assert code == 0, svc.tail()
        assert time.monotonic() - started < 10
        assert "stopped" in svc.tail(50)
    finally:
        svc.stop()


def test_readyz_follows_database_and_broker(tmp_path: Path, pg_home: Path) -> None:
    """Stopping PostgreSQL or the broker turns /readyz 503 with the reason; restarting heals."""
    from migrations import upgrade

    pg = EmbeddedPostgres(pg_home / "pgdata")
    pg.start()
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    broker.start()
    upgrade(pg.url)
    svc = start_service("scoring", service_env(pg.url, broker.bootstrap), tmp_path)
    try:
        wait_status(f"{svc.url}/readyz", 200)

        pg.stop()
        down = wait_status(f"{svc.url}/readyz", 503).json()
        assert down["checks"]["database"] != "ok" and down["checks"]["broker"] == "ok"
        pg.start()
        wait_status(f"{svc.url}/readyz", 200)

        broker.stop()
        down = wait_status(f"{svc.url}/readyz", 503).json()
        assert down["checks"]["broker"] != "ok" and down["checks"]["database"] == "ok"
        broker.start()
        wait_status(f"{svc.url}/readyz", 200)
        assert httpx.get(f"{svc.url}/healthz").status_code == 200
    finally:
        svc.stop()
        broker.stop()
        pg.stop()


def _auth_app(sessionmaker: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = FastAPI()
    app.state.authenticator = Authenticator(sessionmaker, ADMIN_TOKEN, cache_seconds=0)

    @app.get("/admin-only")
    async def admin_only(p: Principal = Depends(require())) -> dict[str, str]:
        return {"role": p.role.value}

    @app.get("/ingest")
    async def ingest(p: Principal = Depends(require(Role.SERVICE))) -> dict[str, str]:
        return {"role": p.role.value}

    @app.get("/read")
    async def read(p: Principal = Depends(require(Role.SUPERVISOR))) -> dict[str, object]:
        return {"teams": sorted(p.team_ids)}

    return app


async def test_auth_roles_and_hashed_storage(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with session_scope(sessionmaker) as session:
        session.add(Team(id="north", name="North", supervisor="sup-ann"))
        sup_token, _ = await issue_token(session, Role.SUPERVISOR, "sup-ann", ["south"])
        svc_token, _ = await issue_token(session, Role.SERVICE, "zendesk")
        revoked, row = await issue_token(session, Role.ADMIN, "old")
        row.revoked_at = row.created_at
    async with sessionmaker() as session:
        hashes = set((await session.execute(select(ApiToken.token_hash))).scalars())
    assert hash_token(sup_token) in hashes and sup_token not in hashes

    app = _auth_app(sessionmaker)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:

        async def status(path: str, token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return (await client.get(path, headers=headers)).status_code

        assert await status("/admin-only", None) == 401
        assert await status("/admin-only", "nope") == 401
        assert await status("/admin-only", revoked) == 401
        assert await status("/admin-only", ADMIN_TOKEN) == 200
        assert await status("/admin-only", sup_token) == 403
        assert await status("/ingest", svc_token) == 200
        assert await status("/ingest", sup_token) == 403
        assert await status("/read", svc_token) == 403
        teams = (await client.get("/read", headers={"Authorization": f"Bearer {sup_token}"})).json()
        assert teams == {"teams": ["north", "south"]}
        www = await client.get("/read")
        assert www.headers["www-authenticate"] == "Bearer"


def test_cli_token_create(database_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kpi", "token", "create", "--role", "service", "--subject", "crm"],
        env={"KPI_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    token = out.stdout.strip()
    assert token.startswith("kpi_")
    bad = subprocess.run(
        [sys.executable, "-m", "kpi", "token", "create", "--role", "root"],
        env={"KPI_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--role" in bad.stderr
    # Subjects and team ids follow the id rule of shared/text.py (a NUL cannot be in argv; a
    # byte that is not UTF-8 arrives as a lone surrogate); no token is created.
    cases: list[tuple[str, str | bytes, str]] = [
        ("--subject", "ann\n", "must not contain the control character U+000A"),
        ("--subject", "\x1b[2Jann", "must not contain the control character U+001B"),
        ("--subject", "a" * 129, "must be at most 128 characters"),
        ("--team", b"north\xff", "must not contain an unpaired surrogate U+DCFF"),
    ]
    for option, value, reason in cases:
        refused = subprocess.run(
            [sys.executable, "-m", "kpi", "token", "create", "--role", "supervisor", option, value],
            env={"KPI_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr == f"{option}: {reason}\n" and refused.stdout == ""
