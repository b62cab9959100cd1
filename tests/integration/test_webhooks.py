"""Native helpdesk webhooks through the real route, PostgreSQL and broker (docs/connectors.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest.webhooks import AliasCache
from shared.auth import Role, issue_token
from shared.db import session_scope
from shared.directory import Specialist, SpecialistAlias
from shared.embedded import EmbeddedBroker
from shared.kafka import ensure_topics
from shared.topics import Topics
from tests.integration.test_ingest_flow import AUTH, ingest_settings, running_ingest
from tests.webhook_payloads import SECRETS, sign
from tests.webhook_scenarios import ALIASES, LI_NA, LIVES, SCENARIOS, Scenario

VENDORS = list(SCENARIOS)


def _settings(database_url: str, bootstrap: str, topics: Topics, **extra: Any) -> Any:
    return ingest_settings(
        database_url, bootstrap, topics, webhook_secrets=json.dumps(SECRETS), **extra
    )


async def map_li_na(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessionmaker) as session:
        session.add(Specialist(id=LI_NA, name="Li Na"))
        await session.flush()
        for kind, alias in ALIASES.items():
            session.add(SpecialistAlias(kind=kind, alias=alias, specialist_id=LI_NA))


async def read_all(bootstrap: str, topics: Topics) -> tuple[list[Any], list[Any]]:
    """Everything on kpi.events and kpi.deadletter now: read up to the end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(topic, p)
            for topic in (topics.events, topics.deadletter)
            for p in consumer.partitions_for_topic(topic) or set()
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[str, list[Any]] = {topics.events: [], topics.deadletter: []}
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "topics not read to their end in 30 s"
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                found[tp.topic] += [orjson.loads(r.value or b"null") for r in records]
        return found[topics.events], found[topics.deadletter]
    finally:
        await consumer.stop()


def _canonical(event: dict[str, Any], receipt_times: bool) -> dict[str, Any]:
    fields = {k: v for k, v in event.items() if k not in ("event_id", "source", "_ingest")}
    moment = dt.datetime.fromisoformat(fields["occurred_at"])
    fields["occurred_at"] = None if receipt_times else moment
    return fields


def _key(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, default=str)


async def _post(
    client: AsyncClient, vendor: str, body: bytes, headers: dict[str, str] | None = None
) -> Any:
    sent = headers if headers is not None else sign(vendor, body, dt.datetime.now(dt.UTC))
    return await client.post(f"/v1/webhooks/{vendor}", content=body, headers=sent)


@pytest.fixture
async def ingest(
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    async with running_ingest(_settings(database_url, bootstrap, created_topics)) as running:
        await producer_ready(running[0])
        yield running


async def producer_ready(app: FastAPI) -> None:
    """Until then a webhook is answered 503 (retry): the broker connection is not up yet."""
    deadline = time.monotonic() + 30
    while app.state.pipeline.producer is None:
        assert time.monotonic() < deadline, "ingest producer not started in 30 s"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("way", list(LIVES))
async def test_a_tickets_life_gives_exactly_its_events_once(
    way: str,
    ingest: tuple[FastAPI, AsyncClient],
    bootstrap: str,
    created_topics: Topics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Create → reply → solve → CSAT → reopen → solve, every request delivered twice.

    ``zendesk-events``: the same life from a Zendesk webhook subscribed to ticket events.
    """
    _, client = ingest
    await map_li_na(sessionmaker)
    scenario: Scenario = LIVES[way](
        dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=8)
    )
    vendor = scenario.vendor
    for body in scenario.bodies:
        for _ in range(2):  # the vendor's retry of a request whose answer it did not get
            r = await _post(client, vendor, body)
            assert r.status_code == 202, r.text
    if vendor != "freshdesk":
        # Vendors that send their own ids and times: a redelivery any time later is the same.
        for body in scenario.bodies:
            assert (await _post(client, vendor, body)).status_code == 202

    events, letters = await read_all(bootstrap, created_topics)
    assert letters == []
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:
        assert event["source"] == vendor and event["_ingest"]["vendor"] == vendor
        content = {k: v for k, v in event.items() if k != "_ingest"}
        # Same id, same content: a redelivery never changes what scoring keeps.
        assert by_id.setdefault(event["event_id"], content) == content
    receipts = vendor == "freshdesk"
    got = sorted(_key(_canonical(e, receipts)) for e in by_id.values())
    assert got == sorted(_key(e) for e in scenario.expected)

    unmapped = (await client.get("/v1/webhooks/unmapped", headers=AUTH)).json()["agents"]
    assert [(a["vendor"], a["counted_as"]) for a in unmapped] == [(vendor, scenario.unmapped_as)]
    stats = (await client.get("/v1/stats", headers=AUTH)).json()
    assert stats["by_topic"][f"webhook:{vendor}"]["deadlettered"] == 0
    metrics = (await client.get("/metrics")).text
    assert f'kpi_webhook_requests_total{{outcome="accepted",vendor="{vendor}"}}' in metrics


@pytest.mark.parametrize("vendor", VENDORS)
async def test_wrong_or_missing_signature_is_401_and_nothing_is_taken(
    vendor: str, ingest: tuple[FastAPI, AsyncClient], bootstrap: str, created_topics: Topics
) -> None:
    _, client = ingest
    body = SCENARIOS[vendor](dt.datetime.now(dt.UTC) - dt.timedelta(hours=8)).bodies[0]
    now = dt.datetime.now(dt.UTC)
    wrong = sign(vendor, body, now, secret="not-the-secret")
    r = await _post(client, vendor, body, wrong)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    assert SECRETS[vendor] not in r.text
    if vendor != "freshdesk":  # the only vendor that does not sign its body
        tampered = sign(vendor, body, now)
        r = await _post(client, vendor, body + b" ", tampered)
        assert r.status_code == 401, r.text
    r = await _post(client, vendor, body, {"Content-Type": "application/json"})
    assert r.status_code == 401 and "missing" in r.json()["detail"]
    events, letters = await read_all(bootstrap, created_topics)
    assert events == [] and letters == []
    metrics = (await client.get("/metrics")).text
    assert f'kpi_webhook_requests_total{{outcome="unauthorized",vendor="{vendor}"}}' in metrics


@pytest.mark.parametrize("vendor", ["zendesk", "chatwoot"])
async def test_a_stale_or_future_timestamp_is_401(
    vendor: str, ingest: tuple[FastAPI, AsyncClient], bootstrap: str, created_topics: Topics
) -> None:
    """Signed correctly but 6 minutes off (KPI_WEBHOOK_MAX_AGE is 5 m): a replay."""
    _, client = ingest
    body = SCENARIOS[vendor](dt.datetime.now(dt.UTC) - dt.timedelta(hours=8)).bodies[0]
    for skew in (-6, 6):
        at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=skew)
        r = await _post(client, vendor, body, sign(vendor, body, at))
        assert r.status_code == 401 and "KPI_WEBHOOK_MAX_AGE" in r.json()["detail"], r.text
    within = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4)
    assert (await _post(client, vendor, body, sign(vendor, body, within))).status_code == 202
    events, _ = await read_all(bootstrap, created_topics)
    assert len(events) == 1


async def test_freshdesk_takes_a_service_token_instead_of_the_secret_header(
    ingest: tuple[FastAPI, AsyncClient],
    bootstrap: str,
    created_topics: Topics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, client = ingest
    async with session_scope(sessionmaker) as session:
        service, _ = await issue_token(session, Role.SERVICE, "freshdesk")
        supervisor, _ = await issue_token(session, Role.SUPERVISOR, "ann", ["north"])
    body = SCENARIOS["freshdesk"](dt.datetime.now(dt.UTC)).bodies[0]
    r = await _post(client, "freshdesk", body, {"Authorization": f"Bearer {supervisor}"})
    assert r.status_code == 401
    r = await _post(client, "freshdesk", body, {"Authorization": f"Bearer {service}"})
    assert r.status_code == 202 and r.json()["accepted"] == 1


async def test_a_vendor_without_a_secret_is_refused_and_an_unknown_vendor_is_404(
    database_url: str, bootstrap: str, created_topics: Topics, clean_db: Any
) -> None:
    only_zammad = json.dumps({"zammad": SECRETS["zammad"]})
    settings = ingest_settings(database_url, bootstrap, created_topics, webhook_secrets=only_zammad)
    async with running_ingest(settings) as (app, client):
        await producer_ready(app)
        body = SCENARIOS["chatwoot"](dt.datetime.now(dt.UTC)).bodies[0]
        r = await _post(client, "chatwoot", body)
        assert r.status_code == 401 and "KPI_WEBHOOK_SECRETS" in r.json()["detail"]
        r = await client.post("/v1/webhooks/intercom", content=b"{}")
        assert r.status_code == 404 and "zendesk" in r.json()["detail"]


@pytest.mark.parametrize(
    ("vendor", "body", "field", "code"),
    [
        ("zammad", b'{"ticket": {}, "article": {}}', "ticket", "missing_field"),
        ("zammad", b"<xml/>", "$", "not_json"),
        ("chatwoot", b'{"event": "conversation_created", "id": 5}', "inbox_id", "missing_field"),
        ("zendesk", b'{"kpi_event": "exploded", "ticket": {"id": "1"}}', "kpi_event",
         "unknown_type"),
        ("freshdesk", b'{"kpi_event": "satisfaction", "ticket": {"id": "1"}, '
                      b'"satisfaction": {"rating": "wow"}}', "satisfaction.rating",
         "invalid_value"),
    ],
)  # fmt: skip
async def test_a_payload_not_understood_is_dead_lettered_with_the_vendor_and_422(
    vendor: str,
    body: bytes,
    field: str,
    code: str,
    ingest: tuple[FastAPI, AsyncClient],
    bootstrap: str,
    created_topics: Topics,
) -> None:
    _, client = ingest
    r = await _post(client, vendor, body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field and r.json()["code"] == code
    events, letters = await read_all(bootstrap, created_topics)
    assert events == [] and len(letters) == 1
    letter = letters[0]
    assert letter["source"] == {
        "via": "http", "topic": None, "partition": None, "offset": None, "vendor": vendor
    }  # fmt: skip
    assert letter["original"] == body.decode() and letter["code"] == code
    assert vendor in letter["reason"] and letter["errors"][0]["field"] == field


async def test_changes_that_count_for_nothing_are_acknowledged_and_counted(
    ingest: tuple[FastAPI, AsyncClient], bootstrap: str, created_topics: Topics
) -> None:
    _, client = ingest
    contact = b'{"event": "contact_created", "id": 31, "name": "Nicole"}'
    r = await _post(client, "chatwoot", contact)
    assert r.status_code == 202 and r.json()["ignored"] == ["event_not_used"]
    assert r.json()["accepted"] == 0
    events, letters = await read_all(bootstrap, created_topics)
    assert events == [] and letters == []
    metrics = (await client.get("/metrics")).text
    assert 'kpi_webhook_ignored_total{reason="event_not_used",vendor="chatwoot"}' in metrics


async def test_mapping_an_agent_later_moves_nothing_already_counted(
    ingest: tuple[FastAPI, AsyncClient],
    bootstrap: str,
    created_topics: Topics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app, client = ingest
    app.state.webhook_intake.aliases = AliasCache(sessionmaker, ttl=0)  # no 10 s wait here
    scenario = SCENARIOS["zendesk"](dt.datetime.now(dt.UTC).replace(microsecond=0))
    before, after = scenario.bodies[8], scenario.bodies[9]  # Bo Chen's ticket T2
    assert (await _post(client, "zendesk", before)).status_code == 202
    r = await _post(client, "zendesk", after)
    assert r.json()["unmapped_agents"] == ["zendesk:4711"]
    listed = (await client.get("/v1/webhooks/unmapped?vendor=zendesk", headers=AUTH)).json()
    assert listed["agents"][0]["agent_id"] == "4711"
    assert listed["agents"][0]["email"] == "bo.chen@example.com"
    assert "stay there" in listed["note"]
    assert (await client.get("/v1/webhooks/unmapped", headers={})).status_code == 401

    async with session_scope(sessionmaker) as session:
        session.add(Specialist(id="bo.chen", name="Bo Chen"))
        await session.flush()
        session.add(SpecialistAlias(kind="email", alias="bo.chen@example.com",
                                    specialist_id="bo.chen"))  # fmt: skip
    assert (await client.get("/v1/webhooks/unmapped", headers=AUTH)).json()["agents"] == []
    reassigned = after.replace(b'"kpi_event": "solved"', b'"kpi_event": "assignee_changed"')
    r = await _post(client, "zendesk", reassigned)
    assert r.status_code == 202 and r.json()["unmapped_agents"] == []
    events, _ = await read_all(bootstrap, created_topics)
    closed = [e for e in events if e["type"] == "ticket.closed"]
    assigned = [e for e in events if e["type"] == "ticket.assigned"]
    assert [e["specialist_id"] for e in closed] == ["zendesk:4711"]  # stays where it was
    assert [e["specialist_id"] for e in assigned] == ["bo.chen"]


async def test_broker_down_is_503_retry_and_a_freshdesk_retry_keeps_its_first_time(
    database_url: str, clean_db: Any, tmp_path: Path
) -> None:
    """503 + Retry-After while the broker is down; Freshdesk's retry gets its first receipt."""
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    broker.start()
    topics = Topics("whdown.")
    try:
        await ensure_topics(broker.bootstrap, 3, topics.all)
        settings = _settings(database_url, broker.bootstrap, topics, ingest_publish_timeout=3.0)
        scenario = SCENARIOS["freshdesk"](dt.datetime.now(dt.UTC))
        async with running_ingest(settings) as (app, client):
            await producer_ready(app)
            assert (await _post(client, "freshdesk", scenario.bodies[0])).status_code == 202
            broker.stop()
            first_try = dt.datetime.now(dt.UTC)
            down = await _post(client, "freshdesk", scenario.bodies[3])  # solved
            assert down.status_code == 503 and down.json()["code"] == "broker_unavailable"
            assert down.headers["retry-after"].isdigit()
            answered = dt.datetime.now(dt.UTC)
            broker.start()  # same port; memory storage, so topics come back empty
            await ensure_topics(broker.bootstrap, 3, topics.all)
            deadline = time.monotonic() + 60
            while (r := await _post(client, "freshdesk", scenario.bodies[3])).status_code != 202:
                assert r.status_code == 503 and time.monotonic() < deadline, r.text
                await asyncio.sleep(0.5)
            events, _ = await read_all(broker.bootstrap, topics)
        # The producer may still deliver the copy it held when we answered 503: the retry has
        # the same id and content, so it counts once, dated when Freshdesk first sent it.
        closed = {_key({**e, "_ingest": None}) for e in events if e["type"] == "ticket.closed"}
        assert len(closed) == 1
        (only,) = [json.loads(c) for c in closed]
        assert first_try <= dt.datetime.fromisoformat(only["occurred_at"]) <= answered
    finally:
        broker.stop()
