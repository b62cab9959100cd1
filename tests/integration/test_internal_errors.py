"""An exception no handler expects: a logged 500 problem that names nothing of the server."""

from __future__ import annotations

import logging

import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient
from sqlalchemy.exc import ProgrammingError

from shared.problems import MEDIA_TYPE
from shared.runtime import create_app
from shared.settings import load_settings
from tests.service_helpers import ADMIN_TOKEN

SECRET = "kpi_leaked_internals_3c1f"


def _failing_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError(f"internal state: {SECRET}")

    @router.get("/v1/bad-sql")
    async def bad_sql() -> None:
        # An SQL error that is no outage: not the 503 of an unreachable database.
        raise ProgrammingError(f"SELECT {SECRET}", {}, Exception("syntax error"))

    return router


@pytest.mark.parametrize("path", ["/v1/boom", "/v1/bad-sql"])
async def test_an_unhandled_exception_is_a_logged_500_problem(
    database_url: str, bootstrap: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        database_url=database_url, kafka_bootstrap=bootstrap, bootstrap_admin_token=ADMIN_TOKEN
    )
    app = create_app("probe", settings=settings, routers=[_failing_routes()], title="probe")
    transport = ASGITransport(app=app)
    with caplog.at_level(logging.ERROR):
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=transport, base_url="http://probe") as client,
        ):
            r = await client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 500, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    body = r.json()
    assert (body["status"], body["type"], body["code"]) == (
        500,
        "urn:kpi:problem:internal",
        "internal",
    )
    assert body["instance"] == path
    assert SECRET not in r.text and "Error" not in r.text
    # Still the security headers of every answer, and the exception in the log, traceback too.
    assert r.headers["x-content-type-options"] == "nosniff"
    logged = [rec for rec in caplog.records if rec.exc_info and SECRET in str(rec.exc_info[1])]
    assert logged and path in logged[0].getMessage(), [r.getMessage() for r in caplog.records]
