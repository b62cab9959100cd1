"""Scoring responses are gzip-encoded for clients that accept it, plain JSON for the others."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.api.schemas import Overview
from services.scoring.app import GZIP_MIN_BYTES
from tests.integration import test_scoring_api as scoring_api
from tests.integration.test_scoring_api import ADMIN, TODAY, seed_daily, seed_directory

# test_scoring_api's fixtures: the same app and client, one scoring engine start per module.
app = scoring_api.app
client = scoring_api.client

OVERVIEW = "/v1/dashboard/overview?window=30d"


@pytest.fixture(autouse=True)
async def _seeded(clean_db: AsyncEngine) -> None:
    # 40 members put the overview well above GZIP_MIN_BYTES; one team listing stays below.
    await seed_directory(
        clean_db,
        teams=[("t1", "One", None), ("t2", "Two", None)],
        specialists=[(f"s{i:03d}", f"Specialist {i}", f"t{i % 2 + 1}") for i in range(40)],
    )
    await seed_daily(
        clean_db, [(f"s{i:03d}", TODAY, "resolution_rate", i % 11, 10) for i in range(40)]
    )


async def _raw(client: AsyncClient, url: str, encoding: str) -> tuple[int, Any, bytes]:
    """Status, headers and the body bytes exactly as sent (httpx would otherwise decode them)."""
    headers = {**ADMIN, "Accept-Encoding": encoding}
    async with client.stream("GET", url, headers=headers) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return response.status_code, response.headers, body


async def test_overview_is_gzipped_when_accepted_and_plain_otherwise(client: AsyncClient) -> None:
    status, headers, plain = await _raw(client, OVERVIEW, "identity")
    assert status == 200
    assert "content-encoding" not in headers
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(plain) > GZIP_MIN_BYTES
    expected = json.loads(plain)
    assert len(expected["members"]) == 40
    Overview.model_validate(expected)  # the documented shape (extra=forbid)

    status, headers, packed = await _raw(client, OVERVIEW, "gzip, deflate")
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/json"
    assert "accept-encoding" in headers["vary"].lower()
    assert int(headers["content-length"]) == len(packed) < len(plain)
    assert json.loads(gzip.decompress(packed)) == expected


async def test_request_without_accept_encoding_gets_plain_json(client: AsyncClient) -> None:
    # httpx sends Accept-Encoding by default; a bare ASGI request carries no such header.
    request = client.build_request("GET", OVERVIEW, headers=ADMIN)
    del request.headers["accept-encoding"]
    response = await client.send(request)
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.json()["window"]["name"] == "30d"


async def test_small_and_error_responses_stay_plain(client: AsyncClient) -> None:
    status, headers, body = await _raw(client, "/v1/teams", "gzip")
    assert status == 200 and len(body) < GZIP_MIN_BYTES
    assert "content-encoding" not in headers
    assert json.loads(body)["teams"][0]["id"] == "t1"

    status, headers, body = await _raw(client, "/v1/teams/nope", "gzip")
    assert status == 404
    assert "content-encoding" not in headers
    problem = json.loads(body)
    assert headers["content-type"] == "application/problem+json"
    assert (problem["status"], problem["detail"]) == (404, "unknown team 'nope'")
