"""Channel URLs through the real notify REST API: 422 on bad input, stored bad rows still list."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kpi.stack import ServiceProcess
from shared.topics import Topics
from tests.service_helpers import ADMIN_TOKEN, service_env, start_service, wait_status

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GOOD = "https://oapi.dingtalk.com/robot/send?access_token=GOODTOKEN"
BAD: list[tuple[str, str]] = [
    ("https://h:99999/robot?access_token=TOKEN99", "port must be a number from 1 to 65535"),
    ("https://h:abc/x?key=TOKENABC", "port must be a number from 1 to 65535"),
    ("https:///robot?access_token=TOKENNOHOST", "must include a host"),
    ("https://h/robot send?access_token=TOKENSPACE", "must not contain spaces or control"),
    ("http://[::1/x?key=TOKENV6", "is not a valid URL (malformed host)"),
    # PostgreSQL's jsonb cannot hold a NUL: refused by the URL rule, not a 500.
    ("https://h/robot\x00?access_token=TOKENNUL", "must not contain spaces or control"),
]


@pytest.fixture
def notify(
    database_url: str, bootstrap: str, created_topics: Topics, tmp_path: Path
) -> Iterator[ServiceProcess]:
    env = service_env(database_url, bootstrap, KPI_TOPIC_PREFIX=created_topics.prefix)
    svc = start_service("notify", env, tmp_path)
    try:
        wait_status(svc.url + "/readyz", 200, timeout=40)
        yield svc
    finally:
        svc.stop()


def _body(url: str, kind: str = "dingtalk") -> dict[str, Any]:
    return {"name": "robot", "kind": kind, "config": {"url": url, "secret": "SIGNSECRET"}}


def _url_error(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert [(e["loc"], e["field"]) for e in errors] == [(["body", "config", "url"], "config.url")]
    assert errors[0]["type"] == "value_error", errors
    return dict(errors[0])


async def test_bad_channel_url_is_422_and_a_stored_one_still_lists(
    clean_db: AsyncEngine, notify: ServiceProcess
) -> None:
    await asyncio.to_thread(_api_phase, notify)
    # A row stored before validation was strict (written directly, as an old release did).
    now = dt.datetime.now(dt.UTC)
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO channels (id, name, kind, team_id, lang, enabled, config, "
                "created_at, updated_at) VALUES ('legacy', 'old robot', 'wecom', NULL, NULL, "
                "false, CAST(:cfg AS jsonb), :now, :now)"
            ),
            {"cfg": orjson.dumps({"url": BAD[0][0]}).decode(), "now": now},
        )
    await asyncio.to_thread(_legacy_phase, notify)
    logs = await asyncio.to_thread(Path(notify.log_path).read_text, errors="replace")
    assert "Traceback" not in logs
    for url, _ in BAD:
        assert url not in logs


def _api_phase(svc: ServiceProcess) -> None:
    with httpx.Client(base_url=svc.url, headers=ADMIN, timeout=10) as c:
        for url, reason in BAD:
            error = _url_error(c.post("/v1/channels", json=_body(url)))
            assert error["msg"].startswith(f"Value error, {reason}"), error
            # The message explains; it never echoes the token-bearing URL back.
            assert "TOKEN" not in str(error)
        # Other fields follow shared/text.py: the process answers 422 naming them, never 500.
        named = c.post("/v1/channels", json={**_body(GOOD), "name": "robot\x00"})
        assert named.status_code == 422, named.text
        assert [(d["loc"], d["type"]) for d in named.json()["errors"]] == [
            (["body", "name"], "invalid_text")
        ]
        assert c.get("/v1/channels/a%00b").status_code == 422
        assert c.get("/v1/channels").json() == []
        created = c.post("/v1/channels", json=_body(GOOD))
        assert created.status_code == 201, created.text
        channel = created.json()
        # Updating to a bad URL is refused the same way and leaves the channel as it was.
        for url, reason in BAD:
            error = _url_error(c.put(f"/v1/channels/{channel['id']}", json=_body(url)))
            assert error["msg"].startswith(f"Value error, {reason}")
        again = c.get(f"/v1/channels/{channel['id']}")
        assert again.status_code == 200 and again.json()["config"] == channel["config"]


def _legacy_phase(svc: ServiceProcess) -> None:
    with httpx.Client(base_url=svc.url, headers=ADMIN, timeout=10) as c:
        listing = c.get("/v1/channels")
        assert listing.status_code == 200, listing.text
        legacy = next(ch for ch in listing.json() if ch["id"] == "legacy")
        assert legacy["config"] == {"url": "https://h:***/***"}
        assert "TOKEN99" not in listing.text
        one = c.get("/v1/channels/legacy")
        assert one.status_code == 200 and one.json()["config"] == legacy["config"]
        # Sending the listed (masked) config back keeps the stored URL, which is invalid:
        # the admin is told which field to fix and why.
        body = {
            "name": "old robot",
            "kind": "wecom",
            "enabled": False,
            "config": one.json()["config"],
        }
        error = _url_error(c.put("/v1/channels/legacy", json=body))
        assert error["msg"] == "Value error, port must be a number from 1 to 65535"
        fixed = {
            **body,
            "config": {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K"},
        }
        assert c.put("/v1/channels/legacy", json=fixed).status_code == 200
