"""The three services as real processes with tokens of every role, shared by the module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from kpi.stack import ServiceProcess
from shared.auth import Role, issue_token
from shared.db import create_engine, create_sessionmaker, session_scope
from shared.kafka import ensure_topics
from shared.topics import Topics
from tests.service_helpers import ADMIN_TOKEN, service_env, start_service, wait_status

DB_PASSWORD = "sec-db-password-3f9a1c7e"
WEBHOOK_SECRET = "sec-webhook-secret-8e2d4b6a"


@dataclass
class Platform:
    urls: dict[str, str]
    tokens: dict[str, str]  # principal name -> clear token
    team: str
    other_team: str
    specialist: str
    log_dir: Path
    services: list[ServiceProcess] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)

    def headers(self, who: str) -> dict[str, str]:
        token = self.tokens.get(who)
        return {"Authorization": f"Bearer {token}"} if token else {}


async def _tokens(url: str, team: str, other: str) -> dict[str, str]:
    engine = create_engine(url, pool_size=1, application_name="security-tests")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            service, _ = await issue_token(session, Role.SERVICE, "sec-zendesk")
            own, _ = await issue_token(session, Role.SUPERVISOR, "sec-ann", [team])
            foreign, _ = await issue_token(session, Role.SUPERVISOR, "sec-bob", [other])
    finally:
        await engine.dispose()
    return {"admin": ADMIN_TOKEN, "service": service, "supervisor": own, "other": foreign}


def start_services(env: dict[str, str], log_dir: Path) -> list[ServiceProcess]:
    """ingest, scoring and notify as processes, each ready; scoring's dashboard proxies use this
    notify and ingest. Stopped again when one of them does not become ready."""
    notify = start_service("notify", env, log_dir)
    ingest = start_service("ingest", env, log_dir)
    upstreams = {"KPI_NOTIFY_URL": notify.url, "KPI_INGEST_URL": ingest.url}
    services = [ingest, start_service("scoring", {**env, **upstreams}, log_dir), notify]
    try:
        for svc in services:
            try:
                wait_status(svc.url + "/readyz", 200, timeout=60)
            except AssertionError as exc:
                code = svc.proc.poll() if svc.proc else None
                raise AssertionError(
                    f"{exc}\n{svc.name} exit={code} log:\n{svc.tail(40)}"
                ) from None
    except BaseException:
        for svc in services:
            svc.stop()
        raise
    return services


@pytest.fixture(scope="package")
def platform(
    database_url: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    tag = uuid.uuid4().hex[:6]
    topics = Topics(f"sec{tag}.")
    asyncio.run(ensure_topics(bootstrap, 2, topics.all))
    # The DSN carries a password (trust auth ignores it) so the logs can be checked for it.
    url = database_url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    env = service_env(url, bootstrap, KPI_TOPIC_PREFIX=topics.prefix, KPI_LOG_FORMAT="json")
    log_dir = tmp_path_factory.mktemp("security-logs")
    team, other, specialist = f"sec-a-{tag}", f"sec-b-{tag}", f"sec-s-{tag}"
    tokens = asyncio.run(_tokens(database_url, team, other))
    services = start_services(env, log_dir)
    try:
        urls = {svc.name: svc.url for svc in services}
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for t in (team, other):
            r = httpx.put(f"{urls['scoring']}/v1/teams/{t}", headers=admin,
                          json={"name": t, "supervisor": None})  # fmt: skip
            assert r.status_code in (200, 201), r.text
        r = httpx.put(f"{urls['scoring']}/v1/specialists/{specialist}", headers=admin,
                      json={"name": "Sec", "team_id": team})  # fmt: skip
        assert r.status_code in (200, 201), r.text
        yield Platform(
            urls, tokens, team, other, specialist, log_dir, services,
            secrets=[*tokens.values(), DB_PASSWORD, WEBHOOK_SECRET],
        )  # fmt: skip
    finally:
        for svc in services:
            svc.stop()
