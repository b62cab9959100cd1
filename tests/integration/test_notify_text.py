"""Notify's REST API and kpi.scores consumer against unstorable text: a 422 or a dead letter."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify.app import build_app
from services.notify.config import NotifyConfig
from services.notify.consumer import ScoresConsumer
from shared.db import utcnow
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.notify_support import snapshot
from tests.integration.test_poison_isolation import dead_letters, scalar
from tests.kafka_helpers import SESSION_TIMEOUT_MS, produce, wait_for
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
URL = "https://hooks.example.com/kpi"
# Within KPI_NOTIFY_SILENCE_MAX_HOURS (31 days by default) of whenever the tests run.
UNTIL = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat()


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str) -> AsyncIterator[FastAPI]:
    """One notify app (consumer, sender, tick) for the module; tables are emptied per test."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    cfg = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        topic_prefix=topics.prefix,
        notify_session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    application = build_app(cfg)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://notify") as c:
        yield c


def _json(**fields: Any) -> str:
    # The standard library writes a lone surrogate as a "\ud800" escape, as any client may.
    return json.dumps(fields)


def _channel(**fields: Any) -> str:
    body = {"name": "ops", "kind": "webhook", "config": {"url": URL, "secret": "s" * 12}}
    return _json(**{**body, **fields})


def _email(**config: Any) -> str:
    # A public relay's name: the default host (localhost) is refused by the egress policy.
    cfg = {
        "sender": "kpi@example.com",
        "recipients": ["ops@example.com"],
        "host": "smtp.example.com",
        **config,
    }
    return _channel(kind="email", config=cfg)


def _secret(kind: str, secret: str) -> str:
    return _channel(kind=kind, config={"url": URL, "secret": secret})


def _silence(**fields: Any) -> str:
    return _json(until=UNTIL, **fields)


CH = "/v1/channels"
# "{channel}" is the id of an existing channel (PUT validates its config after the lookup).
ONE = "/v1/channels/{channel}"
CFG = ("body", "config")

# A NUL (PostgreSQL refuses it in text and jsonb) or a lone surrogate (request bodies are
# parsed by the standard library, which lets "\ud800" through) must be a 422, not a 500; ids
# and names also refuse control characters. (method, url, JSON body, loc of the error)
UNSTORABLE: list[tuple[str, str, str | None, tuple[str, ...]]] = [
    # channels: body
    ("POST", CH, _channel(name="ops\x00"), ("body", "name")),
    ("POST", CH, _channel(name="ops\ud800"), ("body", "name")),
    ("POST", CH, _channel(name="ops\n"), ("body", "name")),
    ("POST", CH, _channel(team_id="north\x00"), ("body", "team_id")),
    ("POST", CH, _channel(team_id="north\x1b"), ("body", "team_id")),
    ("POST", CH, _email(sender="kpi@example.com\r\nBcc: x@y.z"), (*CFG, "sender")),
    ("POST", CH, _email(recipients=["a@b.c", "x\x00"]), (*CFG, "recipients", "1")),
    ("POST", CH, _email(host="smtp\x00"), (*CFG, "host")),
    ("POST", CH, _email(username="u\x85"), (*CFG, "username")),
    ("POST", CH, _email(password="p\x00"), (*CFG, "password")),
    ("POST", CH, _secret("webhook", "secret-\x00"), (*CFG, "secret")),
    ("POST", CH, _secret("dingtalk", "\udc00"), (*CFG, "secret")),
    ("POST", CH, _secret("feishu", "s\x00"), (*CFG, "secret")),
    ("PUT", ONE, _channel(name="\x00"), ("body", "name")),
    ("PUT", ONE, _email(password="p\ud800"), (*CFG, "password")),
    ("PUT", ONE, _email(sender="kpi@example.com\x00"), (*CFG, "sender")),
    # silences and acks: body
    ("POST", "/v1/silences", _silence(specialist_id="s\x00"), ("body", "specialist_id")),
    ("POST", "/v1/silences", _silence(specialist_id="s\t1"), ("body", "specialist_id")),
    ("POST", "/v1/silences", _silence(kpi="nps\x00"), ("body", "kpi")),
    ("POST", "/v1/silences", _silence(kpi="nps", comment="\ud83d"), ("body", "comment")),
    ("POST", "/v1/silences", _silence(kpi="nps", comment="\x00"), ("body", "comment")),
    ("POST", "/v1/alerts/a1/ack", _json(comment="ok\x00"), ("body", "comment")),
    # path ids
    ("GET", "/v1/channels/a%00b", None, ("path", "channel_id")),
    ("PUT", "/v1/channels/a%00b", _channel(), ("path", "channel_id")),
    ("DELETE", "/v1/channels/%00", None, ("path", "channel_id")),
    ("GET", "/v1/alerts/a%00b", None, ("path", "alert_id")),
    ("POST", "/v1/alerts/a%00b/ack", None, ("path", "alert_id")),
    ("GET", "/v1/alerts/%00/deliveries", None, ("path", "alert_id")),
    ("DELETE", "/v1/silences/a%00b", None, ("path", "silence_id")),
    # query parameters
    ("GET", "/v1/alerts?team=%00", None, ("query", "team")),
    ("GET", "/v1/alerts?specialist=s%00", None, ("query", "specialist")),
    ("GET", "/v1/alerts?kpi=nps%00", None, ("query", "kpi")),
    ("GET", "/v1/deliveries?team=n%00", None, ("query", "team")),
    # An endless event stream if it were accepted: the request has a deadline.
    ("GET", "/v1/alerts/stream?lastEventId=1%00", None, ("query", "lastEventId")),
]  # fmt: skip


async def _request(client: AsyncClient, method: str, url: str, body: str | None) -> Response:
    if "{channel}" in url:
        created = await client.post(CH, content=_channel(), headers=ADMIN)
        assert created.status_code == 201, created.text
        url = url.format(channel=created.json()["id"])
    return await asyncio.wait_for(client.request(method, url, content=body, headers=ADMIN), 20)


@pytest.mark.parametrize(
    ("method", "url", "body", "loc"),
    UNSTORABLE,
    ids=[f"{m} {u.split('?')[0]} {'.'.join(loc[1:])}" for m, u, _, loc in UNSTORABLE],
)
async def test_unstorable_text_is_422_naming_the_field(
    client: AsyncClient, method: str, url: str, body: str | None, loc: tuple[str, ...]
) -> None:
    r = await _request(client, method, url, body)
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert (err["loc"], err["type"]) == (list(loc), "invalid_text")
    assert err["msg"].startswith("must not contain"), err
    # Nothing JSON or PostgreSQL cannot carry is echoed back, nor a secret.
    assert "\\u0000" not in r.text and "\\ud" not in r.text and "secret-" not in r.text


async def test_last_event_id_header_with_a_nul_is_422(client: AsyncClient) -> None:
    # A real server's HTTP parser refuses a NUL in a header first (400); ASGI lets it through.
    headers = {**ADMIN, "Last-Event-ID": "7\x00"}
    r = await asyncio.wait_for(client.get("/v1/alerts/stream", headers=headers), 20)
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert (err["loc"], err["type"]) == (["header", "last-event-id"], "invalid_text")


# Parameters that already had a stricter type: a NUL is a 422 from that type.
@pytest.mark.parametrize(
    ("method", "url", "loc"),
    [
        ("GET", "/v1/alerts?state=open%00", ("query", "state")),
        ("GET", "/v1/deliveries?status=%00", ("query", "status")),
        ("GET", "/v1/deliveries?cursor=1%00", ("query", "cursor")),
        ("GET", "/v1/deliveries/1%00", ("path", "delivery_id")),
        ("POST", "/v1/deliveries/%00/resend", ("path", "delivery_id")),
    ],
)
async def test_typed_parameters_refuse_a_nul(
    client: AsyncClient, method: str, url: str, loc: tuple[str, ...]
) -> None:
    r = await _request(client, method, url, None)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == [list(loc)]


async def test_config_key_with_a_lone_surrogate_and_url_with_a_nul_are_422(
    client: AsyncClient,
) -> None:
    # pydantic-core refuses the key itself while looking for unknown keys; the shared 422
    # handler reports that as invalid_text like any other unstorable string.
    body = _json(name="ops", kind="slack", config={"url": URL, "\ud800": 1})
    r = await client.post(CH, content=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert (err["loc"], err["type"]) == (["body", "config"], "invalid_text")
    assert err["msg"] == "must be valid Unicode text"
    # A NUL in a URL is refused by the URL rule, which never echoes the URL.
    body = _channel(kind="wecom", config={"url": "https://h/robot\x00?key=TOKEN"})
    r = await client.post(CH, content=body, headers=ADMIN)
    assert r.status_code == 422 and "TOKEN" not in r.text
    (err,) = r.json()["errors"]
    assert (err["loc"], err["type"]) == (["body", "config", "url"], "value_error")


async def test_every_other_character_is_stored_as_sent(client: AsyncClient) -> None:
    name = "北区 😀 \u202eops\u2028"
    body = _email(password="pass\tword 密码", recipients=["张伟@例子.中国"])
    r = await client.post(CH, content=body.replace('"ops"', json.dumps(name)), headers=ADMIN)
    assert r.status_code == 201, r.text
    channel = r.json()
    assert channel["name"] == name and channel["config"]["recipients"] == ["张伟@例子.中国"]
    assert channel["config"]["password"] == "***"
    assert (await client.get(f"/v1/channels/{channel['id']}", headers=ADMIN)).json() == channel
    comment = "on leave\nback Monday 👨\u200d👩\u200d👧"
    r = await client.post(
        "/v1/silences",
        json={"specialist_id": "李伟", "kpi": "首次响应_hours", "until": UNTIL, "comment": comment},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["specialist_id"], r.json()["comment"]) == ("李伟", comment)
    r = await client.get("/v1/alerts?specialist=李伟&kpi=首次响应_hours", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"items": []}


async def test_unstorable_snapshots_are_dead_lettered_at_decode_not_by_a_failing_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
) -> None:
    now = utcnow()
    good = [orjson.dumps(snapshot(f"ok{i}", now, team_id="north")) for i in range(3)]
    bad = [
        orjson.dumps(snapshot("s\x00", now)),
        orjson.dumps(snapshot("s-ctl", now, team_id="north\x1b[2J")),
        orjson.dumps(snapshot("s-kpi", now)).replace(b'"resolution_rate"', b'"nps\\u0000"'),
        orjson.dumps(snapshot("s-sur", now)).replace(b'"s-sur"', b'"s\\ud800"'),
    ]
    await produce(bootstrap, created_topics.scores, [good[0], *bad[:2], good[1], *bad[2:], good[2]])
    settings = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        topic_prefix=created_topics.prefix,
        notify_session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    consumer = ScoresConsumer(
        settings, sessionmaker, NotifyConfig.from_settings(settings), utcnow, lambda _: None
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())

    async def evaluated() -> bool:
        n = await scalar(sessionmaker, "SELECT count(DISTINCT specialist_id) FROM alert_states")
        return bool(n == 3)

    try:
        await wait_for(evaluated, timeout=60)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)
    letters = await dead_letters(bootstrap, created_topics, len(bad))
    assert sorted(letter["original"].encode() for letter in letters) == sorted(bad)
    # Refused by the decoder (a pydantic ValidationError naming the rule), not by
    # PostgreSQL in a batch that failed and was bisected.
    assert {letter["exception"] for letter in letters} == {
        "pydantic_core._pydantic_core.ValidationError"
    }
    assert sum("invalid_text" in letter["reason"] for letter in letters) == 3
    states = await scalar(sessionmaker, "SELECT string_agg(specialist_id, ',') FROM alert_states")
    assert sorted(states.split(",")) == ["ok0", "ok1", "ok2"]
