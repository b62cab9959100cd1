"""The authorization matrix's own platform: a fresh database, the three services as processes,
and real resources of one team (alert, failed deliveries, channels, silences, plan, a finalised
quarter, a held meeting, incidents).

Its own database and topics keep what the matrix does (finalising a quarter, dismissing
incidents, deleting channels) away from the other tests, and let notify send to a local
receiver that refuses every delivery (HTTP 400), which fails a delivery at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from kpi.stack import ServiceProcess
from shared import health
from shared.auth import Role, issue_token
from shared.db import create_engine, create_sessionmaker, raw_connection, session_scope, utcnow
from shared.embedded import EmbeddedPostgres
from shared.kafka import ensure_topics
from shared.topics import Topics
from tests.integration.notify_support import Receiver
from tests.security.conftest import start_services
from tests.service_helpers import ADMIN_TOKEN, service_env, worker_port

# Who calls: the Authorization header each caller sends is built in `World.headers`.
# own / other: the supervisor of the team / of another team; spec_own: the specialist whose
# resources the rows name; spec_other: a colleague in the same team (as blind as a stranger).
CALLERS = ("none", "malformed", "revoked", "service", "admin", "own", "other", "spec_own",
           "spec_other")  # fmt: skip
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MALFORMED = "Bearer kpi_!!not*a*token!!"
# Resources a supervisor of another team must not be able to tell from unknown ids.
OWNED = ("team", "specialist", "alert", "delivery", "channel", "silence", "meeting")
# Made once per (row, caller) because a successful call uses them up (delete, resend, dismiss).
FRESH = ("silence", "delivery", "channel", "incident", "token")


def quarter_of(day: dt.date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


@dataclass
class World:
    urls: dict[str, str]
    tokens: dict[str, str]
    refs: dict[str, str]  # kind -> a real resource of the owning team (or a fixed value)
    ghosts: dict[str, str]  # kind -> an id of that kind that does not exist
    pools: dict[str, list[str]] = field(default_factory=dict)  # fresh kind -> unused ids

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {"Authorization": token} if token else {}

    def take(self, kind: str) -> str:
        pool = self.pools[kind]
        assert pool, f"the fixture made too few fresh {kind} resources"
        return pool.pop()


def _check(r: httpx.Response, *ok: int) -> Any:
    assert r.status_code in ok, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def _poll(what: str, fetch: Any, ready: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fetch()
        if ready(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not there within {timeout:.0f}s (last: {got})")
        time.sleep(0.2)


@asynccontextmanager
async def _session(url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(url, pool_size=1, application_name="matrix-tests")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()


async def _tokens(
    url: str, team: str, other: str, specialist: str, colleague: str
) -> dict[str, str]:
    """Each caller's Authorization header (none: no header)."""
    holders = {
        "service": (Role.SERVICE, "mx-zendesk", []),
        "own": (Role.SUPERVISOR, "mx-ann", [team]),
        "other": (Role.SUPERVISOR, "mx-bob", [other]),
        "spec_own": (Role.SPECIALIST, specialist, []),
        "spec_other": (Role.SPECIALIST, colleague, []),
        # An admin token that was revoked: nothing of its former role may remain.
        "revoked": (Role.ADMIN, "mx-gone", []),
    }
    headers = {"malformed": MALFORMED, "admin": f"Bearer {ADMIN_TOKEN}"}
    async with _session(url) as session:
        for caller, (role, subject, teams) in holders.items():
            token, row = await issue_token(session, role, subject, teams)
            if caller == "revoked":
                row.revoked_at = utcnow()
            headers[caller] = f"Bearer {token}"
    return headers


async def _incidents(url: str, tag: str, n: int) -> list[str]:
    """``n`` open event incidents (not conditions), which an admin may dismiss."""
    async with _session(url) as session:
        conn = await raw_connection(session)
        ids = []
        for i in range(n):
            incident = await health.open_incident(
                conn,
                key=f"poison:mx-{tag}-{i}",
                kind=health.POISON,
                service="scoring",
                summary="matrix test incident",
            )
            ids.append(str(incident.id))
        return ids


class _Setup:
    """The admin's calls that make the owning team's resources through the public API."""

    def __init__(self, urls: dict[str, str], team: str, receiver: str) -> None:
        self.http = httpx.Client(headers=ADMIN, timeout=30)
        self.urls, self.team, self.receiver = urls, team, receiver

    def channel(self, name: str, enabled: bool) -> str:
        body = channel_body(name, self.team, self.receiver, enabled)
        r = self.http.post(self.urls["notify"] + "/v1/channels", json=body)
        return str(_check(r, 201)["id"])

    def failed_deliveries(self, n: int) -> list[str]:
        def fetch() -> list[dict[str, Any]]:
            params: dict[str, str | int] = {"status": "failed", "team": self.team, "limit": 500}
            got = self.http.get(self.urls["notify"] + "/v1/deliveries", params=params)
            return list(_check(got, 200)["items"])

        rows = _poll(f"{n} failed deliveries", fetch, lambda rows: len(rows) >= n)
        return [str(d["id"]) for d in rows]

    def silence(self, specialist: str) -> str:
        until = (utcnow() + dt.timedelta(days=1)).isoformat()
        body = {"specialist_id": specialist, "kpi": "nps", "until": until, "comment": "matrix"}
        r = self.http.post(self.urls["notify"] + "/v1/silences", json=body)
        return str(_check(r, 201)["id"])


def channel_body(name: str, team: str, receiver: str, enabled: bool) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "webhook",
        "team_id": team,
        "enabled": enabled,
        "config": {"url": f"{receiver}/hook", "secret": "mx-webhook-secret"},
    }


def closures(specialist: str, n: int) -> list[dict[str, Any]]:
    """``n`` unresolved closures an hour ago: resolution rate 0 with enough samples."""
    at = (utcnow() - dt.timedelta(hours=1)).isoformat()
    return [
        {
            "event_id": f"mx-{uuid.uuid4()}",
            "type": "ticket.closed",
            "occurred_at": at,
            "ticket_id": f"mx-t-{uuid.uuid4()}",
            "specialist_id": specialist,
            "resolved": False,
        }
        for _ in range(n)
    ]


@contextmanager
def matrix_world(
    pg_server: EmbeddedPostgres, bootstrap: str, log_dir: Path, fresh: Counter[str]
) -> Iterator[World]:
    """The platform with the owning team's resources; ``fresh`` says how many of each
    use-once kind (FRESH) the rows of the matrix will take."""
    from migrations import upgrade

    tag = uuid.uuid4().hex[:6]
    url = pg_server.create_database(f"kpi_matrix_{tag}")
    upgrade(url)
    topics = Topics(f"mx{tag}.")
    asyncio.run(ensure_topics(bootstrap, 2, topics.all))
    team, other, specialist = f"mx-a-{tag}", f"mx-b-{tag}", f"mx-s-{tag}"
    colleague = f"mx-c-{tag}"
    tokens = asyncio.run(_tokens(url, team, other, specialist, colleague))
    env = service_env(
        url,
        bootstrap,
        KPI_TOPIC_PREFIX=topics.prefix,
        KPI_NOTIFY_GROUP_WAIT_SECONDS="0",
        # The refusing receiver is on loopback, which an egress policy would otherwise deny.
        KPI_NOTIFY_ALLOW_PRIVATE_TARGETS="true",
        # Single sign-on on, its provider unreachable: the sign-in routes answer every caller
        # with the sign-in page's refusal (tests/integration/test_oidc.py runs a real one).
        KPI_OIDC_ISSUER=f"http://127.0.0.1:{worker_port()}",
        KPI_OIDC_CLIENT_ID="kpi-matrix",
        KPI_OIDC_REDIRECT_URL="http://127.0.0.1/v1/auth/oidc/callback",
        KPI_OIDC_ROLE_MAP='{"kpi-admins": "admin"}',
    )
    receiver = Receiver(behaviour=lambda req: (400, b'{"error": "refused"}', 0.0)).start()
    services: list[ServiceProcess] = []
    try:
        services = start_services(env, log_dir)
        urls = {svc.name: svc.url for svc in services}
        setup = _Setup(urls, team, receiver.url)
        for t in (team, other):
            body = {"name": t, "supervisor": None}
            _check(setup.http.put(f"{urls['scoring']}/v1/teams/{t}", json=body), 200)
        body = {"name": "Matrix", "team_id": team}
        for person in (specialist, colleague):
            _check(setup.http.put(f"{urls['scoring']}/v1/specialists/{person}", json=body), 200)
        channel = setup.channel("mx scoped", enabled=False)
        channels = [setup.channel(f"mx fresh {i}", False) for i in range(fresh["channel"])]
        # One enabled channel per delivery needed: the alert goes to each, each refuses it.
        for i in range(fresh["delivery"] + 1):
            setup.channel(f"mx refusing {i}", enabled=True)
        r = setup.http.post(urls["ingest"] + "/v1/events", json=closures(specialist, 10))
        _check(r, 202)
        alerts = _poll(
            "the alert",
            lambda: _check(
                setup.http.get(
                    urls["notify"] + "/v1/alerts",
                    params={"state": "open", "specialist": specialist},
                ),
                200,
            )["items"],
            bool,
        )
        deliveries = setup.failed_deliveries(fresh["delivery"] + 1)
        today = dt.datetime.now(dt.UTC).date()
        quarter = quarter_of(today)
        plan = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": today.isoformat()}]}
        plan_url = f"{urls['scoring']}/v1/specialists/{specialist}/plans/{quarter}"
        _check(setup.http.put(plan_url, json=plan), 200)
        # A finalised quarter (acknowledgement, comment, decisions) and a held meeting of it.
        past_quarter = f"{today.year - 1}Q4"
        finalize = f"{urls['scoring']}/v1/appraisals/{past_quarter}/finalize"
        _check(setup.http.post(finalize, params={"team": team}), 200)
        meeting = {
            "quarter": past_quarter,
            "held_on": today.isoformat(),
            "participants": ["mx-ann"],
        }
        meetings_url = f"{urls['scoring']}/v1/specialists/{specialist}/meetings"
        meeting_id = str(_check(setup.http.post(meetings_url, json=meeting), 201)["id"])
        user = {"username": f"mx-user-{tag}", "password": "matrix password 2026", "role": "admin"}
        _check(setup.http.post(urls["scoring"] + "/v1/users", json=user), 201)
        fresh_tokens = [
            _check(
                setup.http.post(
                    urls["scoring"] + "/v1/tokens", json={"role": "service", "subject": "mx"}
                ),
                201,
            )["id"]
            for _ in range(fresh["token"])
        ]
        world = World(
            urls,
            tokens,
            refs={
                "team": team,
                "other_team": other,
                "specialist": specialist,
                "alert": alerts[0]["alert_id"],
                "delivery": deliveries[0],
                "channel": channel,
                "silence": setup.silence(specialist),
                "quarter": quarter,
                "past_quarter": past_quarter,
                "meeting": meeting_id,
                "today": today.isoformat(),
                "now": utcnow().isoformat(),
                "tomorrow": (utcnow() + dt.timedelta(days=1)).isoformat(),
                "receiver": receiver.url,
                "user": user["username"],
            },
            ghosts={
                "team": f"mx-ghost-team-{tag}",
                "specialist": f"mx-ghost-spec-{tag}",
                "alert": str(uuid.uuid4()),
                "delivery": "987654321987",
                "channel": str(uuid.uuid4()),
                "silence": str(uuid.uuid4()),
                "meeting": "987654321987",
            },
            pools={
                "channel": channels,
                "delivery": deliveries[1:],
                "silence": [setup.silence(specialist) for _ in range(fresh["silence"])],
                "incident": asyncio.run(_incidents(url, tag, fresh["incident"])),
                "token": fresh_tokens,
            },
        )
        setup.http.close()
        yield world
    finally:
        for svc in services:
            svc.stop()
        receiver.stop()
