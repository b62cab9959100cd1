"""Scoring's platform-health routes: status, history, dismissal, and who may call them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scoring.api.schemas import IncidentList, IncidentOut, PlatformHealth
from services.scoring.app import build_app
from shared import health
from shared.auth import Role, issue_token
from shared.db import raw_connection, session_scope
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str) -> AsyncIterator[FastAPI]:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    cfg = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        topic_prefix=topics.prefix,
        scoring_session_timeout_ms=1000,
    )
    application = build_app(cfg)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://scoring") as c:
        yield c


async def _token(
    sm: async_sessionmaker[AsyncSession], role: Role, teams: Iterable[str] = ()
) -> dict[str, str]:
    async with session_scope(sm) as session:
        clear, _ = await issue_token(session, role, f"{role.value}-1", teams)
    return {"Authorization": f"Bearer {clear}"}


async def _open(
    sm: async_sessionmaker[AsyncSession], key: str, kind: str, detail: dict[str, Any] | None = None
) -> health.Incident:
    async with session_scope(sm) as session:
        return await health.open_incident(
            await raw_connection(session),
            key=key,
            kind=kind,
            service="scoring",
            summary=f"{kind} happened",
            detail=detail,
        )


async def test_health_status_follows_open_incidents(
    client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sup = await _token(sessionmaker, Role.SUPERVISOR, ["north"])
    r = await client.get("/v1/platform/health", headers=sup)
    assert r.status_code == 200 and r.json() == {"status": "ok", "incidents": []}

    poison = await _open(sessionmaker, "poison:scoring", health.POISON, {"records": 3})
    r = await client.get("/v1/platform/health", headers=ADMIN)
    assert r.json()["status"] == "degraded"
    assert r.json()["incidents"] == [{**poison.to_dict(), "condition": False}]

    stall = await _open(sessionmaker, "stall:scoring", health.STALL, {"lag": 10})
    admin = (await client.get("/v1/platform/health", headers=ADMIN)).json()
    assert admin["status"] == "stalled"
    PlatformHealth.model_validate(admin)  # the documented shape (extra=forbid)
    assert [i["id"] for i in admin["incidents"]] == [stall.id, poison.id]  # newest first
    assert admin["incidents"][0]["detail"] == {"lag": 10} and admin["incidents"][0]["condition"]
    # Supervisors see the same status and summaries, without the operators' detail.
    supervisor = (await client.get("/v1/platform/health", headers=sup)).json()
    assert supervisor["status"] == "stalled"
    assert PlatformHealth.model_validate(supervisor).incidents[0].detail is None
    assert [i["summary"] for i in supervisor["incidents"]] == ["stall happened", "poison happened"]
    assert all("detail" not in i for i in supervisor["incidents"])

    async with session_scope(sessionmaker) as session:
        await health.resolve_incident(await raw_connection(session), "stall:scoring")
    r = await client.get("/v1/platform/health", headers=sup)
    assert r.json()["status"] == "degraded" and len(r.json()["incidents"]) == 1


async def test_history_and_dismissal(
    client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    stall = await _open(sessionmaker, "stall:scoring", health.STALL)
    reset = await _open(sessionmaker, "log_reset:g:kpi.events", health.LOG_RESET)
    url = f"/v1/platform/incidents/{reset.id}/dismiss"

    r = await client.post(f"/v1/platform/incidents/{stall.id}/dismiss", headers=ADMIN)
    assert r.status_code == 409 and "resolves by itself" in r.json()["detail"]
    r = await client.post(url, headers=ADMIN)
    assert r.status_code == 200
    IncidentOut.model_validate(r.json())
    assert (r.json()["id"], r.json()["status"], r.json()["resolved_by"]) == (
        reset.id,
        "resolved",
        "bootstrap-admin",
    )
    assert (await client.post(url, headers=ADMIN)).status_code == 409
    assert (
        await client.post("/v1/platform/incidents/999999/dismiss", headers=ADMIN)
    ).status_code == 404
    assert (await client.post("/v1/platform/incidents/0/dismiss", headers=ADMIN)).status_code == 422

    r = await client.get("/v1/platform/incidents", headers=ADMIN)
    assert [i["id"] for i in r.json()["incidents"]] == [reset.id, stall.id]
    IncidentList.model_validate(r.json())
    r = await client.get("/v1/platform/incidents?status=resolved", headers=ADMIN)
    assert [i["id"] for i in r.json()["incidents"]] == [reset.id]
    r = await client.get("/v1/platform/incidents?status=open&limit=1", headers=ADMIN)
    assert [i["id"] for i in r.json()["incidents"]] == [stall.id]
    assert (await client.get("/v1/platform/incidents?status=x", headers=ADMIN)).status_code == 422
    assert (await client.get("/v1/platform/incidents?limit=0", headers=ADMIN)).status_code == 422
    health_now = (await client.get("/v1/platform/health", headers=ADMIN)).json()
    assert health_now["status"] == "stalled" and len(health_now["incidents"]) == 1


async def test_auth(client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    incident = await _open(sessionmaker, "poison:scoring", health.POISON)
    sup = await _token(sessionmaker, Role.SUPERVISOR, ["north"])
    svc = await _token(sessionmaker, Role.SERVICE)
    dismiss = f"/v1/platform/incidents/{incident.id}/dismiss"
    for method, path in (
        ("GET", "/v1/platform/health"),
        ("GET", "/v1/platform/incidents"),
        ("POST", dismiss),
    ):
        assert (await client.request(method, path)).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert (await client.request(method, path, headers=bad)).status_code == 401
        assert (await client.request(method, path, headers=svc)).status_code == 403
    assert (await client.get("/v1/platform/health", headers=sup)).status_code == 200
    assert (await client.get("/v1/platform/incidents", headers=sup)).status_code == 403
    assert (await client.post(dismiss, headers=sup)).status_code == 403
    # The refused dismissal changed nothing.
    r = await client.get("/v1/platform/health", headers=sup)
    assert r.json()["status"] == "degraded"
