"""Problem details (RFC 9457): the builders on any input, and the handlers of a real app."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, HTTPException, Query
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from shared import http_problems, problems
from shared.http_problems import ProblemError
from shared.problems import MAX_NAME, MAX_TEXT, Problem, field_error, field_name
from shared.runtime import create_app
from shared.text import StorableText

# Anything a request can carry: NUL, lone surrogates, controls, CJK, astral characters, and
# strings far larger than an answer should echo.
ODD = st.sampled_from(
    ["", "\x00", "\ud800", "a\udfffb", "客户满意度", "\U0001f600", "\u2028", "x" * 100_000]
)
ANY_TEXT = st.one_of(ODD, st.text(st.characters(exclude_categories=()), max_size=300))
LOC = st.lists(st.one_of(ANY_TEXT, st.integers(-(2**70), 2**70)), max_size=6)
STATUS = st.integers(100, 599)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _decoded(found: Problem) -> dict[str, Any]:
    raw = problems.encode(found)
    text = raw.decode("utf-8")  # valid UTF-8: no lone surrogate made it into the answer
    body = orjson.loads(raw)
    assert isinstance(body, dict)
    assert not _UNSTORABLE.search(text) and "\\u0000" not in text
    return body


@given(status=STATUS, detail=ANY_TEXT, instance=ANY_TEXT, code=st.none() | ANY_TEXT)
def test_any_problem_encodes_with_its_status_and_a_bounded_detail(
    status: int, detail: str, instance: str, code: str | None
) -> None:
    body = _decoded(problems.problem(status, detail, instance=instance, code=code))
    assert body["status"] == status
    assert body["type"] == "about:blank" or body["type"].startswith(problems.TYPE_PREFIX)
    assert body["title"] and body["code"] and "errors" not in body
    assert len(body["detail"]) <= MAX_TEXT and len(body["instance"]) <= MAX_TEXT
    if detail.isprintable() and len(detail) <= MAX_TEXT:
        assert body["detail"] == detail  # clean text is echoed as it is
    Problem.model_validate(body)


@given(errors=st.lists(st.tuples(LOC, ANY_TEXT, ANY_TEXT), max_size=5), extra=ANY_TEXT)
def test_any_field_errors_encode_and_name_their_field(
    errors: list[tuple[list[str | int], str, str]], extra: str
) -> None:
    raw = [{"loc": loc, "msg": msg, "type": kind, "input": extra} for loc, msg, kind in errors]
    found = problems.invalid(problems.field_errors(raw), instance="/v1/x", note=extra)
    body = _decoded(found)
    assert body["status"] == 422 and body["type"] == "urn:kpi:problem:invalid-request"
    assert "\n" not in body["detail"] and len(body["detail"]) <= MAX_TEXT
    assert len(body["errors"]) == len(errors)
    for got, (loc, _, _) in zip(body["errors"], errors, strict=True):
        assert "input" not in got  # an input is never echoed (it may be huge, or a secret)
        assert len(got["loc"]) == len(loc)
        assert all(isinstance(p, int) or len(p) <= MAX_NAME for p in got["loc"])
        assert got["field"] == field_name(got["loc"])
    if errors:
        first = " ".join(body["errors"][0]["field"].split())
        assert body["detail"].startswith(first[: MAX_TEXT - 1])


@pytest.mark.parametrize(
    ("loc", "name"),
    [
        (["body", "team_id"], "team_id"),
        (["body", "aliases", "zendesk"], "aliases.zendesk"),
        (["body", "goals", 0, "target"], "goals[0].target"),
        (["body", 2, "score"], "[2].score"),
        (["body", 2], "[2]"),
        (["body"], "$"),
        ([], "$"),
        (["query", "window"], "window"),
        (["path", "quarter"], "quarter"),
        (["header", "last-event-id"], "last-event-id"),
        (["events", 0, "score"], "events[0].score"),
    ],
)
def test_field_names(loc: list[str | int], name: str) -> None:
    assert field_name(loc) == name


def test_summary_names_the_first_field_its_reason_and_the_others() -> None:
    errors = [field_error(["body", f], f"bad {f}\nreally") for f in ("a", "b", "c", "d", "e")]
    assert problems.summary(errors[:1]) == "a: bad a really"
    assert problems.summary(errors) == "a: bad a really; also b, c, d and 1 more"


def test_every_kind_has_its_own_type_title_and_code() -> None:
    kinds = problems.KINDS
    assert len({k.type for k in kinds}) == len({k.status for k in kinds}) == len(kinds)
    for kind in kinds:
        found = problems.problem(kind.status, "x", instance="/")
        assert (found.type, found.title, found.code) == (kind.type, kind.title, kind.code)
        assert re.fullmatch(r"urn:kpi:problem:[a-z-]+", found.type)
    teapot = problems.problem(418, "x", instance="/")
    assert (teapot.type, teapot.title) == ("about:blank", "I'm a Teapot")


# ---------------------------------------------------------------------------
# The handlers, on an app with them installed (requests in process, no server)
# ---------------------------------------------------------------------------


class Body(BaseModel):
    name: StorableText
    size: int


def _app() -> FastAPI:
    app = FastAPI()
    http_problems.install(app)

    @app.put("/things/{thing_id}")
    async def put_thing(thing_id: int, body: Body, limit: int = Query(1, ge=1)) -> Body:
        if thing_id == 404:
            raise HTTPException(404, f"unknown thing {thing_id}")
        if thing_id == 409:
            raise HTTPException(409, [{"loc": ["body", "name"], "msg": "taken", "type": "x"}])
        if thing_id == 429:
            raise ProblemError(429, "slow down", code="slow", headers={"Retry-After": "3"}, n=1)
        if thing_id == 500:
            raise RuntimeError("secret internals: password=hunter2")
        return body

    return app


async def _call(app: FastAPI, method: str, url: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, url, **kw)


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == problems.MEDIA_TYPE
    body = r.json()
    assert body["status"] == status and body["instance"] == r.request.url.path
    Problem.model_validate(body)
    assert isinstance(body, dict)
    return body


GOOD = b'{"name": "n", "size": 1}'


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "code", "fields"),
    [
        ("GET", "/nowhere", b"", 404, "route_not_found", []),
        ("DELETE", "/things/1", b"", 405, "method_not_allowed", []),
        ("PUT", "/things/1", b'{"name": "n"}', 422, "invalid_request", ["size"]),
        ("PUT", "/things/x?limit=0", b"{}", 422, "invalid_request",
         ["thing_id", "limit", "name", "size"]),
        ("PUT", "/things/1", b"{bad", 422, "invalid_request", ["$"]),
        # What Python's JSON encoder writes for a lone surrogate; JSON allows it.
        ("PUT", "/things/1", b'{"name": "\\ud800", "size": 1}', 422, "invalid_request",
         ["name"]),
        # Python's JSON reads NaN and Infinity; echoing them made the answer unencodable (500).
        ("PUT", "/things/1", b'{"name": "n", "size": NaN}', 422, "invalid_request", ["size"]),
        ("PUT", "/things/1", b'{"name": "n", "size": -Infinity}', 422, "invalid_request",
         ["size"]),
        ("PUT", "/things/404", GOOD, 404, "not_found", []),
        ("PUT", "/things/409", GOOD, 409, "conflict", ["name"]),
        ("PUT", "/things/429", GOOD, 429, "slow", []),
        ("PUT", "/things/500", GOOD, 500, "internal", []),
    ],
)  # fmt: skip
async def test_every_error_of_an_app_is_a_problem(
    method: str, url: str, body: bytes, status: int, code: str, fields: list[str]
) -> None:
    headers = {"content-type": "application/json"}
    r = await _call(_app(), method, url, headers=headers, content=body)
    found = _problem(r, status)
    assert found["code"] == code
    assert [e["field"] for e in found.get("errors", [])] == fields
    if fields:
        assert fields[0] in found["detail"]
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    if status == 405:
        assert r.headers["allow"] == "PUT" and "PUT" in found["detail"]


async def test_a_problem_error_keeps_its_headers_and_members() -> None:
    r = await _call(_app(), "PUT", "/things/429", json={"name": "n", "size": 1})
    body = _problem(r, 429)
    assert r.headers["retry-after"] == "3" and body["n"] == 1
    assert body["type"] == "urn:kpi:problem:rate-limited"


async def test_the_guard_answers_a_problem_before_the_service_has_started() -> None:
    # No lifespan has run: the guard itself answers, with the problem and its headers.
    app = create_app("test", title="test")
    r = await _call(app, "GET", "/v1/whoami")
    body = _problem(r, 503)
    assert body["code"] == "starting" and r.headers["retry-after"] == "1"
    assert r.headers["x-content-type-options"] == "nosniff"
