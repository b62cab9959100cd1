"""HTTP intake against the real broker: per-event results, auth, limits, 503 while it is down."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import Role, issue_token
from shared.db import session_scope
from shared.embedded import EmbeddedBroker
from shared.kafka import ensure_topics
from shared.topics import Topics
from tests.integration.test_ingest_flow import (
    AUTH,
    Outputs,
    all_types,
    ev,
    ingest_settings,
    produce_raw,
    running_ingest,
    wait_consuming,
)


async def _tokens(sm: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    async with session_scope(sm) as session:
        service, _ = await issue_token(session, Role.SERVICE, "zendesk")
        supervisor, _ = await issue_token(session, Role.SUPERVISOR, "ann", ["north"])
    return service, supervisor


async def test_http_mixed_batch_auth_and_limits(
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    topics = created_topics
    service_token, supervisor_token = await _tokens(sessionmaker)
    svc = {"Authorization": f"Bearer {service_token}"}
    settings = ingest_settings(
        database_url, bootstrap, topics, ingest_max_batch=20, ingest_max_body_bytes=4096
    )
    good = [obj for _, obj in all_types("h")]
    bad_csat = ev("h-bad", "survey.csat", ticket_id="T", score=9)
    batch: list[Any] = [good[0], bad_csat, 42, *good[1:], {**good[2], "extra": {"new": 1}}]

    async with running_ingest(settings) as (_app, client):
        assert (await client.post("/v1/events", json=good[0])).status_code == 401
        bad_token = {"Authorization": "Bearer nope"}
        assert (await client.post("/v1/events", json=good[0], headers=bad_token)).status_code == 401
        sup = {"Authorization": f"Bearer {supervisor_token}"}
        assert (await client.post("/v1/events", json=good[0], headers=sup)).status_code == 403
        assert (await client.get("/v1/stats", headers=svc)).status_code == 403

        resp = await client.post("/v1/events", json=batch, headers=svc)
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["accepted"] == len(good) + 1 and body["rejected"] == 2
        statuses = [(r["index"], r["status"]) for r in body["results"]]
        assert statuses[:3] == [(0, "accepted"), (1, "rejected"), (2, "rejected")]
        rejected = body["results"][1]
        assert rejected["event_id"] == "h-bad"
        assert rejected["errors"][0]["field"] == "score"
        assert rejected["errors"][0]["code"] == "out_of_range"
        assert body["results"][2]["errors"][0]["code"] == "not_object"

        single_bad = await client.post("/v1/events", json=bad_csat, headers=AUTH)
        assert single_bad.status_code == 422
        assert single_bad.json()["results"][0]["errors"][0]["field"] == "score"

        not_json = await client.post("/v1/events", content=b"{nope", headers=AUTH)
        assert not_json.status_code == 400 and "JSON" in not_json.json()["detail"]

        too_many = await client.post("/v1/events", json=[good[0]] * 21, headers=svc)
        assert too_many.status_code == 413 and "KPI_INGEST_MAX_BATCH" in too_many.text
        too_big = await client.post("/v1/events", json={**good[0], "pad": "x" * 5000}, headers=svc)
        assert too_big.status_code == 413 and "KPI_INGEST_MAX_BODY_BYTES" in too_big.text

        # Acked before 202: the accepted events are already readable.
        async with Outputs(bootstrap, topics) as out:
            await out.until(lambda: len(out.events) >= len(good) + 1 and len(out.letters) >= 4)
            assert {e["event_id"] for e in out.events} == {g["event_id"] for g in good}
            assert all(e["_ingest"]["via"] == "http" for e in out.events)
            assert all(e["_ingest"]["topic"] is None for e in out.events)
            letters = sorted(d["code"] for d in out.letters)
            assert letters == ["not_json", "not_object", "out_of_range", "out_of_range"]
            assert all(d["source"]["via"] == "http" for d in out.letters)

        stats = (await client.get("/v1/stats", headers=AUTH)).json()
        assert stats["by_topic"]["http"]["published"] == len(good) + 1
        assert stats["by_topic"]["http"]["deadlettered"] == 4
        assert stats["by_reason"] == {"not_json": 1, "not_object": 1, "out_of_range": 2}


async def test_http_unstorable_text_is_rejected_per_event_naming_the_field(
    database_url: str, bootstrap: str, created_topics: Topics, clean_db: Any
) -> None:
    """NUL, lone surrogates and controls in ids: 4xx per event, dead-lettered once, never 500."""
    topics = created_topics
    good = [obj for _, obj in all_types("u")]
    # json.dumps writes a lone surrogate as a \ud800 escape: orjson refuses such a body
    # whole, yet each event is judged on its own like any other rejection.
    bad = [
        (json.dumps(ev("u-nul\x00", "ticket.reopened", ticket_id="T")), "event_id"),
        (json.dumps(ev("u-\ud800", "ticket.reopened", ticket_id="T")), "event_id"),
        (json.dumps(ev("u-ctl", "ticket.assigned", ticket_id="T", specialist_id="s\x1b")),
         "specialist_id"),
        (json.dumps(ev("u-src", "ticket.reopened", ticket_id="T", source="\udc00")), "source"),
    ]  # fmt: skip
    body = "[" + ",".join([json.dumps(good[0]), *(b for b, _ in bad)])
    body += "," + ",".join(json.dumps(g) for g in good[1:]) + "]"
    cesu = b'{"event_id": "u-cesu", "type": "ticket.reopened", "ticket_id": "\xed\xa0\x80",'
    cesu += b' "occurred_at": "2026-03-01T09:30:00Z"}'

    async with running_ingest(ingest_settings(database_url, bootstrap, topics)) as (app, client):
        await wait_consuming(app)  # the producer is up before the consumer joins
        resp = await client.post("/v1/events", content=body.encode(), headers=AUTH)
        assert resp.status_code == 202, resp.text
        results = resp.json()["results"]
        rejected = [
            (r["index"], r["errors"][0]["field"], r["errors"][0]["code"])
            for r in results
            if r["status"] == "rejected"
        ]
        assert rejected == [(i + 1, field, "invalid_text") for i, (_, field) in enumerate(bad)]
        assert "unpaired surrogate U+D800" in results[2]["errors"][0]["reason"]
        assert results[2]["event_id"] == "u-\ufffd"  # echoed, but never unencodable

        # Every event rejected: 422 per event, not 400 (nor 500) for the whole body.
        for single, field in [(bad[1][0].encode(), "event_id"), (cesu, "ticket_id")]:
            resp = await client.post("/v1/events", content=single, headers=AUTH)
            assert resp.status_code == 422, resp.text
            assert resp.json()["results"][0]["errors"][0]["field"] == field
        # A body broken in another way too is still not JSON.
        broken = await client.post("/v1/events", content=b'["\\ud800", NaN]', headers=AUTH)
        assert broken.status_code == 400 and broken.json()["code"] == "not_json"

        async with Outputs(bootstrap, topics) as out:
            await out.until(lambda: len(out.events) >= len(good) and len(out.letters) >= 7)
            await out.poll()
            assert sorted(e["event_id"] for e in out.events) == sorted(g["event_id"] for g in good)
            # Exactly once each: four from the batch, two single events, one broken body.
            assert sorted((d["code"], d["errors"][0]["field"]) for d in out.letters) == sorted(
                [("invalid_text", f) for _, f in bad]
                + [("invalid_text", "event_id"), ("invalid_text", "ticket_id"), ("not_json", "$")]
            )
            assert all(d["source"]["via"] == "http" for d in out.letters)

        stats = (await client.get("/v1/stats", headers=AUTH)).json()
        assert stats["by_reason"] == {"invalid_text": 6, "not_json": 1}


async def test_broker_down_pauses_and_resumes(database_url: str, tmp_path: Path) -> None:
    """Broker gone: HTTP 503 + Retry-After, /readyz says why; back: both resume by themselves."""
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    broker.start()
    topics = Topics("down.")
    try:
        await ensure_topics(broker.bootstrap, 3, topics.all)
        settings = ingest_settings(
            database_url, broker.bootstrap, topics, ingest_publish_timeout=3.0
        )
        first = all_types("d1")
        async with running_ingest(settings) as (app, client):
            await wait_consuming(app)
            ok = await client.post("/v1/events", json=first[0][1], headers=AUTH)
            assert ok.status_code == 202, ok.text

            broker.stop()
            started = time.monotonic()
            down = await client.post("/v1/events", json=first[1][1], headers=AUTH)
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"].isdigit()
            assert time.monotonic() - started < 10
            again = await client.post("/v1/events", json=first[1][1], headers=AUTH)
            assert again.status_code == 503
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["ingest"] != "ok"

            broker.start()  # same port; memory storage, so topics come back empty
            await ensure_topics(broker.bootstrap, 3, topics.all)
            deadline = time.monotonic() + 60
            while True:
                resp = await client.post("/v1/events", json=first[2][1], headers=AUTH)
                if resp.status_code == 202:
                    break
                assert resp.status_code == 503 and time.monotonic() < deadline, resp.text
                await asyncio.sleep(0.5)
            raw = [(topics.raw_for(t), None, orjson.dumps(o)) for t, o in all_types("d2")]
            await produce_raw(broker.bootstrap, raw)
            async with Outputs(broker.bootstrap, topics) as out:
                await out.until(lambda: len(out.events) >= 1 + len(raw), timeout=60)
                ids = {e["event_id"] for e in out.events}
            assert {o["event_id"] for _, o in all_types("d2")} <= ids
            assert first[2][1]["event_id"] in ids
            deadline = time.monotonic() + 30
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, (await client.get("/readyz")).text
                await asyncio.sleep(0.5)
    finally:
        broker.stop()
