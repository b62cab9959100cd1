"""Helpdesk webhooks to a specialist's KPIs: ingest and scoring with the real broker and database.

Aliases are set through scoring's PUT /v1/specialists/{id}, as an admin would; one ticket's
life per helpdesk (docs/connectors.md) must then show in the specialist's KPIs, and mapping
an agent later must move nothing already counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.app import build_app as build_scoring
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.test_ingest_flow import AUTH, running_ingest
from tests.integration.test_webhooks import _post, _settings, producer_ready
from tests.kafka_helpers import SESSION_TIMEOUT_MS
from tests.service_helpers import ADMIN_TOKEN
from tests.webhook_scenarios import ALIASES, LI_NA, SCENARIOS, zendesk, zendesk_events

KPIS = "/v1/specialists/{}/kpis?window=7d"


async def _kpis(scoring: AsyncClient, specialist: str) -> dict[str, Any]:
    r = await scoring.get(KPIS.format(specialist), headers=AUTH)
    assert r.status_code == 200, r.text
    kpis: dict[str, Any] = r.json()["kpis"]
    return kpis


async def _until(scoring: AsyncClient, specialist: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        kpis = await _kpis(scoring, specialist)
        if done(kpis):
            return kpis
        assert time.monotonic() < deadline, f"{specialist}: KPIs not there in 90 s: {kpis}"
        await asyncio.sleep(0.2)


@asynccontextmanager
async def _services(
    database_url: str, bootstrap: str, topics: Topics
) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    """Scoring and ingest on the test's broker and database: (scoring, ingest) clients."""
    scoring_settings = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        topic_prefix=topics.prefix,
        bootstrap_admin_token=ADMIN_TOKEN,
        scoring_session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    scoring_app = build_scoring(scoring_settings)
    async with (
        scoring_app.router.lifespan_context(scoring_app),
        AsyncClient(transport=ASGITransport(app=scoring_app), base_url="http://s") as scoring,
        running_ingest(_settings(database_url, bootstrap, topics)) as (ingest_app, ingest),
    ):
        await producer_ready(ingest_app)
        yield scoring, ingest


async def test_a_zendesk_ticket_life_through_event_subscriptions_shows_in_the_kpis(
    database_url: str, bootstrap: str, created_topics: Topics, clean_db: AsyncEngine
) -> None:
    """A webhook subscribed to Zendesk's ticket events, every request delivered twice, plus
    the CSAT trigger (no event carries the rating) and the solved trigger of the same
    solve: one ticket, one reply, one closure, one rating, no conflicting copy."""
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=8)
    subscribed = zendesk_events(t0)
    triggers = zendesk(t0).bodies
    solved, rating = triggers[3], triggers[4]  # the first solve (3 h) and the CSAT (4 h)
    async with _services(database_url, bootstrap, created_topics) as (scoring, ingest):
        r = await scoring.put(
            f"/v1/specialists/{LI_NA}", json={"name": "Li Na", "aliases": ALIASES}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        for body in subscribed.bodies:
            for _ in range(2):
                assert (await _post(ingest, "zendesk", body)).status_code == 202
        # The triggers name ticket 35436; here they report ticket 5158's solve and rating.
        for body in (solved, rating):
            body = body.replace(b'"35436"', b'"5158"')
            assert (await _post(ingest, "zendesk", body)).status_code == 202

        kpis = await _until(
            scoring,
            LI_NA,
            lambda k: (
                k["customer_satisfaction"]["denominator"] == 1
                and k["avg_response_time_hours"]["denominator"] == 1
            ),
        )
        assert (kpis["resolution_rate"]["numerator"], kpis["resolution_rate"]["denominator"]) == (
            1, 1
        )  # fmt: skip
        assert kpis["customer_satisfaction"]["numerator"] == 1
        assert kpis["avg_response_time_hours"]["numerator"] == 2.0  # the first public reply
        bo = await _until(scoring, "zendesk:4711", lambda k: k["resolution_rate"]["denominator"])
        assert bo["resolution_rate"]["numerator"] == 1  # an event subscription's solve resolves

        # T: created, assigned, 2 replies, 2 closures, a reopen, the rating; T2: created,
        # closed. The trigger's copy of the first solve was the same event, equal in content.
        async with clean_db.connect() as conn:
            applied = await conn.scalar(text("SELECT count(*) FROM processed_events"))
            conflicts = await conn.scalar(text("SELECT count(*) FROM event_conflicts"))
        assert (applied, conflicts) == (10, 0)


async def test_each_helpdesks_ticket_life_shows_in_the_specialists_kpis(
    database_url: str, bootstrap: str, created_topics: Topics, clean_db: Any
) -> None:
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=8)
    async with _services(database_url, bootstrap, created_topics) as (scoring, ingest):
        r = await scoring.put(
            f"/v1/specialists/{LI_NA}", json={"name": "Li Na", "aliases": ALIASES}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        assert r.json()["aliases"] == ALIASES and "Nothing already counted" in r.json()["notice"]
        r = await scoring.put(
            "/v1/specialists/impostor", json={"aliases": {"zendesk": "3612"}}, headers=AUTH
        )
        assert r.status_code == 409 and r.json()["errors"][0]["loc"] == [
            "body", "aliases", "zendesk"
        ], r.text  # fmt: skip

        for vendor, scenario in SCENARIOS.items():
            for body in scenario(t0).bodies:
                assert (await _post(ingest, vendor, body)).status_code == 202

        # One ticket per helpdesk, each solved, reopened and solved again: counted once.
        kpis = await _until(
            scoring,
            LI_NA,
            lambda k: (
                k["resolution_rate"]["denominator"] == 4
                and k["customer_satisfaction"]["denominator"] == 3
                and k["avg_response_time_hours"]["denominator"] == 4
            ),
        )
        assert kpis["resolution_rate"]["numerator"] == 4
        assert kpis["customer_satisfaction"]["numerator"] == 3
        # 2 h to the first reply in Zendesk, Zammad and Chatwoot; Freshdesk's events are dated
        # when ingest received them, a moment apart.
        assert 6.0 <= kpis["avg_response_time_hours"]["numerator"] < 6.01

        # Bo Chen, unmapped: counted under the vendor's id; the Zendesk ticket was unresolved.
        bo = await _until(scoring, "zendesk:4711", lambda k: k["resolution_rate"]["denominator"])
        assert bo["resolution_rate"]["numerator"] == 0
        unmapped = (await ingest.get("/v1/webhooks/unmapped", headers=AUTH)).json()["agents"]
        assert sorted(a["counted_as"] for a in unmapped) == [
            "chatwoot:9", "freshdesk:bo.chen@example.com", "zammad:14", "zendesk:4711"
        ]  # fmt: skip

        r = await scoring.put(
            "/v1/specialists/bo.chen",
            json={"aliases": {"zendesk": "4711", "email": "Bo.Chen@Example.com"}},
            headers=AUTH,
        )
        assert r.json()["aliases"] == {"email": "bo.chen@example.com", "zendesk": "4711"}
        unmapped = (await ingest.get("/v1/webhooks/unmapped", headers=AUTH)).json()["agents"]
        # Zammad and Freshdesk named Bo's e-mail, so the e-mail alias maps them too; Chatwoot's
        # conversation names its assignee without one.
        assert [a["counted_as"] for a in unmapped] == ["chatwoot:9"]
        # Nothing already counted moves.
        assert (await _kpis(scoring, "zendesk:4711"))["resolution_rate"]["denominator"] == 1
        assert (await _kpis(scoring, "bo.chen"))["resolution_rate"]["denominator"] == 0
