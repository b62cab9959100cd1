"""POST /v1/specialists/import against the real app and PostgreSQL: all rows or none, named."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scoring.app import build_app
from shared.auth import Role
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.test_scoring_api import seed_directory, token
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CSV = {**ADMIN, "Content-Type": "text/csv; charset=utf-8"}
URL = "/v1/specialists/import"
# A specialist as stored: (name, team, {kind: alias}).
Stored = tuple[str | None, str | None, dict[str, str]]


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str) -> AsyncIterator[FastAPI]:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    cfg = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        topic_prefix=topics.prefix,
        scoring_session_timeout_ms=1000,
    )
    application = build_app(cfg)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://scoring") as c:
        yield c


def csv_of(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return ("\ufeff" + out.getvalue()).encode()


async def directory(engine: AsyncEngine) -> dict[str, Stored]:
    async with engine.connect() as conn:
        people = (await conn.execute(text("SELECT id, name, team_id FROM specialists"))).all()
        aliases = (
            await conn.execute(text("SELECT specialist_id, kind, alias FROM specialist_aliases"))
        ).all()
    out: dict[str, Stored] = {sid: (name, team, {}) for sid, name, team in people}
    for sid, kind, alias in aliases:
        out[sid][2][kind] = alias
    return out


async def test_import_creates_updates_and_a_second_run_changes_nothing(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(clean_db, [("north", "North", None)], [("wang", "Wang", None)])
    body = csv_of(
        [
            ["id", "name", "team_id", "aliases.zendesk", "aliases.email"],
            ["li.na", "Li Na 李娜", "north", "3612", " Li.Na@Example.com "],
            ["wang", '=HYPERLINK("x")', "", "", ""],
        ]
    )
    r = await client.post(URL, content=body, headers=CSV)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["applied"] and not got["dry_run"]
    assert [(x["row"], x["id"], x["outcome"]) for x in got["rows"]] == [
        (2, "li.na", "created"),
        (3, "wang", "updated"),
    ]
    assert got["counts"] == {"created": 1, "updated": 1, "unchanged": 0}
    assert "Nothing already counted moves" in got["notice"]
    assert await directory(clean_db) == {
        "li.na": ("Li Na 李娜", "north", {"zendesk": "3612", "email": "li.na@example.com"}),
        "wang": ('=HYPERLINK("x")', None, {}),  # a formula is stored as text (exports neutralise)
    }
    shown = (await client.get("/v1/specialists/li.na", headers=ADMIN)).json()
    assert shown["aliases"] == {"email": "li.na@example.com", "zendesk": "3612"}
    again = await client.post(URL, content=body, headers=CSV)
    assert again.json()["counts"] == {"created": 0, "updated": 0, "unchanged": 2}

    # Only a team column: names and aliases stay as they are.
    moved = await client.post(URL, content=b"id,team_id\nwang,north\n", headers=CSV)
    assert moved.json()["rows"] == [{"row": 2, "id": "wang", "outcome": "updated"}]
    assert moved.json()["columns"] == ["id", "team_id"] and moved.json()["notice"] is None
    assert (await directory(clean_db))["wang"] == ('=HYPERLINK("x")', "north", {})
    assert (await directory(clean_db))["li.na"][2] == {
        "zendesk": "3612",
        "email": "li.na@example.com",
    }


async def test_a_refused_row_applies_nothing_and_every_bad_cell_is_named(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(clean_db, [("north", "North", None)], [("owner", "Owner", "north")])
    r = await client.put(
        "/v1/specialists/owner", json={"aliases": {"zendesk": "77"}}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    before = await directory(clean_db)
    body = csv_of(
        [
            ["id", "name", "team_id", "aliases.zendesk"],
            ["fine", "Fine 好", "north", ""],
            ["lost", "Lost", "nowhere", ""],
            ["thief", "Thief", "", "77"],
        ]
    )
    for dry_run in (False, True):
        r = await client.post(URL, params={"dry_run": dry_run}, content=body, headers=CSV)
        assert r.status_code == 422, r.text
        assert "row 3, column team_id: unknown team 'nowhere'" in r.text
        assert "row 4, column aliases.zendesk" in r.text and "'owner'" in r.text
        assert "row 2" not in r.text
        assert await directory(clean_db) == before  # the good row was not applied either

    hostile = [
        ("name", "a\x00b", "U+0000"),
        ("name", "a\x1b[31mred", "U+001B"),
        ("id", "x" * 5000, "at most 128"),
        ("name", "名" * 201, "at most 200"),
        ("team_id", "north\r\nInjected: 1", "U+000D"),
    ]
    for column, value, words in hostile:
        row = {"id": "h1", "name": "H", "team_id": "north", column: value}
        body = csv_of([["id", "name", "team_id"], [row["id"], row["name"], row["team_id"]]])
        r = await client.post(URL, content=body, headers=CSV)
        assert r.status_code == 422, (column, r.text)
        assert f"row 2, column {column}" in r.text and words in r.text, r.text
    assert await directory(clean_db) == before


async def test_dry_run_reports_without_writing_and_rows_may_swap_an_alias(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(clean_db, [], [("a", "A", None), ("b", "B", None)])
    await client.put("/v1/specialists/a", json={"aliases": {"email": "x@y.z"}}, headers=ADMIN)
    await client.put("/v1/specialists/b", json={"aliases": {"email": "p@q.r"}}, headers=ADMIN)
    swap = b"id,aliases.email\na,p@q.r\nb,X@Y.Z\nc,\n"
    dry = await client.post(URL, params={"dry_run": "true"}, content=swap, headers=CSV)
    assert dry.status_code == 200 and dry.json()["dry_run"] and not dry.json()["applied"]
    assert [x["outcome"] for x in dry.json()["rows"]] == ["updated", "updated", "created"]
    assert set(await directory(clean_db)) == {"a", "b"}
    done = await client.post(URL, content=swap, headers=CSV)
    assert done.status_code == 200, done.text
    got = await directory(clean_db)
    assert (got["a"][2], got["b"][2], got["c"]) == (
        {"email": "p@q.r"},
        {"email": "x@y.z"},
        (None, None, {}),
    )


async def test_only_admins_import_and_only_csv(
    client: AsyncClient, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sup = await token(sessionmaker, Role.SUPERVISOR, "ann", ["north"])
    r = await client.post(URL, content=b"id\nx\n", headers={**sup, "Content-Type": "text/csv"})
    assert r.status_code == 403
    for ctype in ("application/json", "text/csv; charset=latin-1", ""):
        r = await client.post(URL, content=b"id\nx\n", headers={**ADMIN, "Content-Type": ctype})
        assert r.status_code == 415, (ctype, r.text)
    r = await client.post(URL, content=b"\xff\xfeid\n", headers=CSV)
    assert r.status_code == 422 and "not UTF-8" in r.text
    assert await directory(clean_db) == {}


# -- property: the import against a reference model of the directory ----------------------

IDS = ["s1", "s2", "s3", "s4"]
TEAMS = ["t1", "t2"]
ALIASES = ["10", "11", "12"]


def model(
    before: dict[str, Stored], rows: list[tuple[str, str | None, str | None, str | None]]
) -> dict[str, Stored] | None:
    """The directory after importing ``rows`` (id, name, team, zendesk alias), or None when
    the import must be refused (an unknown team, an alias someone outside the file holds)."""
    in_file = {r[0] for r in rows}
    outside = {a.get("zendesk") for k, (_, _, a) in before.items() if k not in in_file}
    after = dict(before)
    for sid, name, team, alias in rows:
        if (team is not None and team not in TEAMS) or (alias is not None and alias in outside):
            return None
        after[sid] = (name, team, {"zendesk": alias} if alias else {})
    return after


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.dictionaries(
        st.sampled_from(IDS),
        st.tuples(st.none() | st.sampled_from(["N", "名"]), st.none() | st.sampled_from(TEAMS)),
    ),
    held=st.dictionaries(st.sampled_from(IDS), st.sampled_from(ALIASES)).filter(
        lambda d: len(set(d.values())) == len(d)
    ),
    rows=st.lists(
        st.tuples(
            st.sampled_from(IDS),
            st.none() | st.sampled_from(["N", "M 李"]),
            st.none() | st.sampled_from([*TEAMS, "t9"]),
            st.none() | st.sampled_from(ALIASES),
        ),
        max_size=4,
        unique_by=(lambda r: r[0], lambda r: r[3] or object()),
    ),
)
async def test_the_import_matches_a_reference_model(
    client: AsyncClient,
    clean_db: AsyncEngine,
    before: dict[str, tuple[str | None, str | None]],
    held: dict[str, str],
    rows: list[tuple[str, str | None, str | None, str | None]],
) -> None:
    async with clean_db.begin() as conn:
        await conn.execute(text("TRUNCATE specialist_aliases, specialists, teams CASCADE"))
    people = [(k, n, t) for k, (n, t) in before.items()]
    await seed_directory(clean_db, [(t, t, None) for t in TEAMS], people)
    held = {k: a for k, a in held.items() if k in before}
    async with clean_db.begin() as conn:
        for sid, alias in held.items():
            await conn.execute(
                text("INSERT INTO specialist_aliases VALUES ('zendesk', :a, :s)"),
                {"a": alias, "s": sid},
            )
    start: dict[str, Stored] = {
        k: (n, t, {"zendesk": held[k]} if k in held else {}) for k, (n, t) in before.items()
    }
    body = csv_of(
        [["id", "name", "team_id", "aliases.zendesk"]]
        + [[sid, name or "", team or "", alias or ""] for sid, name, team, alias in rows]
    )
    expected = model(start, rows)
    r = await client.post(URL, content=body, headers=CSV)
    if expected is None:
        assert r.status_code == 422, r.text
        assert await directory(clean_db) == start
        return
    assert r.status_code == 200, r.text
    assert await directory(clean_db) == expected
    outcomes: list[Any] = [x["outcome"] for x in r.json()["rows"]]
    assert outcomes == [
        "created" if sid not in start else "unchanged" if start[sid] == expected[sid] else "updated"
        for sid, *_ in rows
    ]
    again = await client.post(URL, content=body, headers=CSV)
    assert again.json()["counts"]["unchanged"] == len(rows)
