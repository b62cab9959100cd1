"""GET /v1/tickets through the real app and PostgreSQL: rows, filters, errors, streaming."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from starlette.types import Message, Scope

from services.scoring import ticket_export
from services.scoring.engine.handlers import process_batch
from services.scoring.kpi.measure import Measure
from shared.auth import Role
from shared.db import session_scope
from shared.events import validate_event_obj
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.export_checks import Leftovers, read_csv, read_xlsx
from tests.integration.test_scoring_api import seed_directory, token
from tests.service_helpers import ADMIN_TOKEN

TZ = "Asia/Shanghai"
NOW = dt.datetime(2026, 3, 31, 2, 0, tzinfo=dt.UTC)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str) -> AsyncIterator[FastAPI]:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    cfg = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        timezone=TZ,
        topic_prefix=topics.prefix,
        scoring_session_timeout_ms=1000,
        sla_first_response_hours=2,
    )
    from services.scoring.app import build_app

    application = build_app(cfg)
    async with application.router.lifespan_context(application):
        application.state.clock = lambda: NOW
        yield application


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://scoring") as c:
        yield c


def ev(n: int, kind: str, ticket: str, when: str, **fields: Any) -> Any:
    return validate_event_obj(
        {"event_id": f"{ticket}-{n}", "type": kind, "ticket_id": ticket,
         "occurred_at": f"2026-03-{when}+08:00", **fields}
    )  # fmt: skip


EVENTS = [
    # t1 (north, s1): resolved within the SLA, followed up, two CSAT surveys (the later counts).
    ev(1, "ticket.created", "t1", "02T09:00:00", specialist_id="s1", channel="email"),
    ev(2, "ticket.first_response", "t1", "02T10:30:00", specialist_id="s1"),
    ev(3, "ticket.closed", "t1", "02T15:00:00", specialist_id="s1", resolved=True),
    ev(4, "ticket.followup", "t1", "03T09:00:00", specialist_id="s1"),
    ev(5, "survey.csat", "t1", "03T10:00:00", score=5),
    ev(6, "survey.csat", "t1", "03T09:30:00", score=2),
    # t2 (north): closed by 王芳, reopened after: the owner s1 is its specialist.
    ev(1, "ticket.created", "t2", "05T09:00:00", specialist_id="s1"),
    ev(2, "ticket.first_response", "t2", "05T13:00:00", specialist_id="s1"),
    ev(3, "ticket.closed", "t2", "06T09:00:00", specialist_id="s2", resolved=True),
    ev(4, "ticket.reopened", "t2", "06T12:00:00"),
    # =t3 (north, 王芳): a hostile id, closed unresolved, the reopen before the closure.
    ev(1, "ticket.created", "=t3", "10T09:00:00", specialist_id="s2"),
    ev(2, "ticket.reopened", "=t3", "10T10:00:00"),
    ev(3, "ticket.closed", "=t3", "10T11:00:00", specialist_id="s2", resolved=False),
    # t4 (south, s3) and t5 (north, but created in February): not in a north March export.
    ev(1, "ticket.created", "t4", "11T09:00:00", specialist_id="s3"),
    validate_event_obj({"event_id": "t5-1", "type": "ticket.created", "ticket_id": "t5",
                        "specialist_id": "s1", "occurred_at": "2026-02-28T23:59:59+08:00"}),
]  # fmt: skip


async def seed(engine: AsyncEngine) -> None:
    await seed_directory(
        engine,
        [("north", "North", "ann"), ("south", "South", None)],
        [("s1", "Li Wei", "north"), ("s2", "王芳", "north"), ("s3", "Bo", "south")],
    )
    sm = async_sessionmaker(engine, expire_on_commit=False)
    async with session_scope(sm) as session:
        await process_batch(session, EVENTS, measure=Measure(ZoneInfo(TZ)))


def url(**params: str) -> str:
    return "/v1/tickets?" + urlencode(params)


NORTH_MARCH_EN = [
    ["Ticket ID", "Specialist ID", "Specialist", "Team", "Channel", "Created", "First response",
     "Latest closure", "Resolved", "Reopens", "Response time (h)", "Resolution time (h)",
     "First-response SLA met", "Followed up", "CSAT score"],
    ["'=t3", "s2", "王芳", "north", "unknown", "2026-03-10 09:00:00", "",
     "2026-03-10 11:00:00", "no", "1", "", "2.0", "", "no", ""],
    ["t1", "s1", "Li Wei", "north", "email", "2026-03-02 09:00:00", "2026-03-02 10:30:00",
     "2026-03-02 15:00:00", "yes", "0", "1.5", "6.0", "yes", "yes", "5"],
    ["t2", "s1", "Li Wei", "north", "unknown", "2026-03-05 09:00:00", "2026-03-05 13:00:00",
     "", "", "1", "4.0", "", "no", "no", ""],
]  # fmt: skip


async def test_csv_and_xlsx_hold_the_same_rows(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed(clean_db)
    r = await client.get(url(team="north", format="csv", lang="en", **MARCH), headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "tickets-north-2026-03-01-2026-03-31.csv" in r.headers["content-disposition"]
    assert read_csv(r.content) == NORTH_MARCH_EN
    r = await client.get(url(team="north", format="xlsx", lang="en", **MARCH), headers=ADMIN)
    assert r.status_code == 200, r.text
    sheet = read_xlsx(r.content).worksheets[0]
    # Times are date cells, hours numbers (a whole 2.0 reads back as the int 2).
    got = [
        ["" if v is None else v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, dt.datetime)
         else str(float(v)) if i in (10, 11) and n else str(v) for i, v in enumerate(row)]
        for n, row in enumerate(sheet.iter_rows(values_only=True))
    ]  # fmt: skip
    assert got == NORTH_MARCH_EN


async def test_filters_language_and_scope(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed(clean_db)
    every = read_csv((await client.get(url(format="csv", **MARCH), headers=ADMIN)).content)
    assert [r[0] for r in every[1:]] == ["'=t3", "t1", "t2", "t4"]  # t5: February
    assert every[0][0] == "工单编号"  # zh-CN by default
    english = {**ADMIN, "Accept-Language": "en-US,en;q=0.9,zh;q=0.5"}
    feb = await client.get(
        url(format="csv", **{"from": "2026-02-28", "to": "2026-02-28"}), headers=english
    )
    assert [r[0] for r in read_csv(feb.content)] == ["Ticket ID", "t5"]
    one = await client.get(url(format="csv", team="north", specialist="s2", **MARCH), headers=ADMIN)
    assert [r[0] for r in read_csv(one.content)[1:]] == ["'=t3"]
    ann = await token(async_sessionmaker(clean_db), Role.SUPERVISOR, "ann", ["north"])
    mine = await client.get(url(format="csv", team="north", **MARCH), headers=ann)
    assert [r[0] for r in read_csv(mine.content)[1:]] == ["'=t3", "t1", "t2"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "csv", "from": "2026-02-30"}, "from"),
        ({"format": "csv", "to": "yesterday"}, "to"),
        ({"format": "csv", "from": "2026-03-02", "to": "2026-03-01"}, "from"),
        ({"format": "csv", "from": "2025-01-01", "to": "2026-03-01"}, "from"),
        ({"format": "pdf"}, "format"),
        ({}, "format"),
        ({"format": "csv", "lang": "fr"}, "lang"),
        ({"format": "csv", "team": "north\x00"}, "team"),
    ],
)
async def test_bad_parameters_are_problems_naming_the_field(
    client: AsyncClient, clean_db: AsyncEngine, params: dict[str, str], field: str
) -> None:
    r = await client.get(url(**params), headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


async def test_who_may_export(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed(clean_db)
    sm = async_sessionmaker(clean_db)
    ann = await token(sm, Role.SUPERVISOR, "ann", ["north"])
    r = await client.get(url(format="csv"), headers=ann)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "team", r.text
    assert (await client.get(url(format="csv", team="south"), headers=ann)).status_code == 404
    r = await client.get(url(format="csv", team="north", specialist="s3"), headers=ann)
    assert r.status_code == 404
    assert (await client.get(url(format="csv", team="nope"), headers=ADMIN)).status_code == 404
    specialist = await token(sm, Role.SPECIALIST, "s1")
    assert (
        await client.get(url(format="csv", team="north"), headers=specialist)
    ).status_code == 403
    assert (await client.get(url(format="csv", team="north"))).status_code == 401


async def _idle_in_transaction(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                        "'scoring-api' AND state LIKE 'idle in transaction%'"
                    )
                )
            ).scalar_one()
        )


async def test_a_client_gone_mid_stream_ends_the_transaction(
    app: FastAPI,
    client: AsyncClient,
    clean_db: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of one ticket: the stream is cut after its first rows. The cursor's transaction
    ends and its connection goes back to the pool, before the rest is ever fetched."""
    await seed(clean_db)
    monkeypatch.setattr(ticket_export, "BATCH", 1)
    fetched = 0
    real = ticket_export.rows_of

    def counting(*args: Any) -> Any:
        nonlocal fetched
        fetched += 1
        return real(*args)

    monkeypatch.setattr(ticket_export, "rows_of", counting)
    path, query = url(format="csv", **MARCH).split("?")
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"scoring"), (b"authorization", ADMIN["Authorization"].encode())],
        "client": ("127.0.0.1", 50000), "server": ("scoring", 80),
    }  # fmt: skip
    bodies: list[bytes] = []
    gone = asyncio.Event()
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            bodies.append(message["body"])
            if len(bodies) == 2:  # the header line and the first batch's row
                gone.set()
                await asyncio.sleep(0.2)  # a real socket would now refuse the next write
                raise OSError("the client went away")

    pool = app.state.read_db.pool
    with contextlib.suppress(OSError):
        await asyncio.wait_for(app(scope, receive, send), 30)
    assert len(bodies) == 2
    assert fetched < 4  # 4 tickets in the range: the export did not run to its end
    assert await _idle_in_transaction(clean_db) == 0
    # The connection goes back to the pool as the closed stream unwinds (on a busy machine
    # a moment after the app returns): wait for it, with a deadline.
    deadline = asyncio.get_running_loop().time() + 10
    while pool.get_idle_size() != pool.get_size():
        assert asyncio.get_running_loop().time() < deadline, "the export kept its connection"
        await asyncio.sleep(0.05)


async def test_xlsx_leaves_no_temp_file(
    client: AsyncClient, clean_db: AsyncEngine, temp_files: Leftovers
) -> None:
    await seed(clean_db)
    r = await client.get(url(format="xlsx", **MARCH), headers=ADMIN)
    assert r.status_code == 200
    assert read_xlsx(r.content).worksheets[0].title == "工单"
    assert temp_files() == []
