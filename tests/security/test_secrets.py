"""Secrets (tokens, webhook secrets, DSN password) never in logs, errors or API output."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import httpx

from tests.security.conftest import WEBHOOK_SECRET, Platform


def test_secrets_stay_out_of_api_output_errors_and_logs(
    platform: Platform, database_url: str
) -> None:
    admin = platform.headers("admin")
    notify = platform.urls["notify"]
    outputs: list[str] = []
    r = httpx.post(
        notify + "/v1/channels",
        headers=admin,
        json={
            "name": "sec",
            "kind": "webhook",
            "config": {"url": "https://hooks.example.com/hook", "secret": WEBHOOK_SECRET},
        },
    )
    assert r.status_code == 201, r.text
    channel = r.json()["id"]
    outputs.append(r.text)
    outputs.append(httpx.get(notify + "/v1/channels", headers=admin).text)
    outputs.append(httpx.get(f"{notify}/v1/channels/{channel}", headers=admin).text)
    # Errors that echo input must not echo secrets either.
    bad = {"name": "x", "kind": "webhook", "config": {"url": "nope", "secret": WEBHOOK_SECRET}}
    outputs.append(httpx.post(notify + "/v1/channels", headers=admin, json=bad).text)
    outputs.append(httpx.put(f"{notify}/v1/channels/{channel}", headers=admin, json=bad).text)
    for who in ("service", "supervisor", "other"):
        for url in platform.urls.values():
            outputs.append(httpx.get(url + "/v1/whoami", headers=platform.headers(who)).text)
            outputs.append(httpx.get(url + "/readyz").text)
            outputs.append(httpx.get(url + "/metrics").text)
    # A wrong token is not echoed back.
    wrong = {"Authorization": "Bearer " + platform.tokens["admin"][::-1]}
    outputs.append(httpx.get(platform.urls["scoring"] + "/v1/teams", headers=wrong).text)
    for secret in platform.secrets:
        for text in outputs:
            assert secret not in text, f"{secret[:6]}… in API output: {text[:200]}"
    for path in sorted(platform.log_dir.glob("*.log")):
        data = path.read_text(errors="replace")
        assert data, path
        for secret in platform.secrets:
            assert secret not in data, f"{secret[:6]}… in {path.name}"


def test_tokens_are_stored_only_as_sha256(platform: Platform, database_url: str) -> None:
    async def rows() -> list[asyncpg.Record]:
        conn = await asyncpg.connect("postgresql://" + database_url.split("://", 1)[1])
        try:
            return list(await conn.fetch("SELECT * FROM api_tokens"))
        finally:
            await conn.close()

    stored = asyncio.run(rows())
    dump = repr([dict(r) for r in stored])
    hashes = {r["token_hash"] for r in stored}
    for who in ("service", "supervisor", "other"):
        token = platform.tokens[who]
        assert token not in dump
        assert hashlib.sha256(token.encode()).hexdigest() in hashes
