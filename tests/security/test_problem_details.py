"""Every error answer of the three real services is an RFC 9457 problem naming what was wrong.

Each service gets the same bad requests: an unknown route, no token, a bad token, the wrong
role, a bad query parameter, a body that is not JSON, a body with a bad field, a body over
the limit and an unknown id. Every answer must be ``application/problem+json`` with
``status`` equal to the HTTP status, the kind's ``type`` and ``title``, the request's path as
``instance``, and for input errors the offending field in ``errors[].field``; none may echo a
token or a NUL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.problems import MEDIA_TYPE, Problem, kind_of
from tests.security.conftest import Platform

MB = 1024 * 1024


@dataclass(frozen=True)
class Bad:
    """One bad request and what it must be answered."""

    what: str
    method: str
    path: str
    who: str | None  # a token of Platform.tokens, "bogus", or None for no token
    status: int
    code: str
    field: str | None = None  # the input error's field, when it is one
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def _oversized(limit: int) -> bytes:
    return b'{"name": "' + b"x" * limit + b'"}'


def _common(service: str, guarded: str, role_refused: tuple[str, str, str]) -> list[Bad]:
    """What every service answers alike: routes, tokens, roles."""
    method, path, who = role_refused
    return [
        Bad("unknown route", "GET", "/v1/no-such-route", "admin", 404, "route_not_found"),
        Bad("wrong method", "DELETE", "/v1/whoami", "admin", 405, "method_not_allowed"),
        Bad("missing token", "GET", guarded, None, 401, "missing_credentials"),
        Bad("bad token", "GET", guarded, "bogus", 401, "invalid_token"),
        Bad("wrong role", method, path, who, 403, "role_not_allowed"),
    ]


CASES: dict[str, list[Bad]] = {
    "ingest": [
        *_common("ingest", "/v1/stats", ("POST", "/v1/events", "supervisor")),
        Bad("bad query", "GET", "/v1/webhooks/unmapped?vendor=nope", "admin", 422,
            "invalid_request", "vendor"),
        Bad("not JSON", "POST", "/v1/events", "service", 400, "not_json", "$", b"{nope"),
        Bad("bad field", "POST", "/v1/events", "service", 422, "events_rejected", "[0].score",
            b'[{"event_id": "pd-1", "type": "survey.csat", "occurred_at": '
            b'"2026-01-05T09:00:00Z", "ticket_id": "T-pd", "score": 9}]'),
        Bad("oversized body", "POST", "/v1/events", "service", 413, "body_too_large",
            body=_oversized(5 * MB)),
        Bad("unknown id", "POST", "/v1/webhooks/nope", None, 404, "not_found", body=b"{}"),
    ],
    "scoring": [
        *_common("scoring", "/v1/teams", ("GET", "/v1/teams", "service")),
        Bad("bad query", "GET", "/v1/leaderboard?kpi=nope", "admin", 422, "invalid_request",
            "kpi"),
        Bad("bad window", "GET", "/v1/teams/{team}/kpis?window=forever", "admin", 422,
            "invalid_request", "window"),
        Bad("not JSON", "PUT", "/v1/teams/pd-team", "admin", 422, "invalid_request", "$",
            b"{nope"),
        Bad("bad field", "PUT", "/v1/teams/pd-team", "admin", 422, "invalid_request", "name",
            b'{"name": "a\\u0000b", "supervisor": null}'),
        Bad("oversized body", "PUT", "/v1/teams/pd-team", "admin", 413, "body_too_large",
            body=_oversized(MB)),
        Bad("unknown id", "GET", "/v1/teams/pd-nope", "admin", 404, "not_found"),
        Bad("off the proxy's list", "GET", "/v1/dashboard/notify/whoami", "admin", 404,
            "not_found"),
        # notify's own problem, relayed by the dashboard's proxy with its content type.
        Bad("unknown id through the proxy", "POST", "/v1/dashboard/notify/alerts/pd-nope/ack",
            "admin", 404, "not_found"),
    ],
    "notify": [
        *_common("notify", "/v1/channels", ("POST", "/v1/channels", "supervisor")),
        Bad("bad query", "GET", "/v1/deliveries?cursor=abc", "admin", 422, "invalid_request",
            "cursor"),
        Bad("not JSON", "POST", "/v1/channels", "admin", 422, "invalid_request", "$", b"{nope"),
        Bad("bad field", "POST", "/v1/channels", "admin", 422, "invalid_request", "kind",
            b'{"name": "pd", "kind": "pigeon", "config": {}}'),
        Bad("bad nested field", "POST", "/v1/channels", "admin", 422, "invalid_request",
            "config.url", b'{"name": "pd", "kind": "webhook", "config": {"url": "ftp://x"}}'),
        Bad("oversized body", "POST", "/v1/channels", "admin", 413, "body_too_large",
            body=_oversized(MB)),
        Bad("unknown id", "GET", "/v1/channels/pd-nope", "admin", 404, "not_found"),
    ],
}  # fmt: skip


def _headers(platform: Platform, bad: Bad) -> dict[str, str]:
    headers = dict(bad.headers)
    if bad.who == "bogus":
        headers["Authorization"] = "Bearer kpi_not_a_token"
    elif bad.who is not None:
        headers.update(platform.headers(bad.who))
    if bad.body is not None:
        headers["Content-Type"] = "application/json"
    return headers


def _check(platform: Platform, service: str, bad: Bad) -> list[str]:
    path = bad.path.format(team=platform.team)
    r = httpx.request(
        bad.method, platform.urls[service] + path, content=bad.body,
        headers=_headers(platform, bad), timeout=30,
    )  # fmt: skip
    where = f"{service} {bad.method} {path} ({bad.what}): {r.status_code} {r.text[:300]}"
    wrong = []
    if r.status_code != bad.status:
        return [f"{where}: want {bad.status}"]
    if r.headers.get("content-type") != MEDIA_TYPE:
        wrong.append(f"{where}: content-type {r.headers.get('content-type')}")
    body: dict[str, Any] = r.json()
    Problem.model_validate(body)
    kind = kind_of(bad.status)
    expected = {"status": bad.status, "type": kind.type, "title": kind.title, "code": bad.code}
    got = {k: body.get(k) for k in expected}
    if got != expected:
        wrong.append(f"{where}: {got} != {expected}")
    # The proxy relays notify's problem as it is, whose instance is notify's path.
    relayed = path.startswith("/v1/dashboard/notify/alerts")
    if not relayed and body["instance"] != path.split("?")[0]:
        wrong.append(f"{where}: instance {body['instance']!r}")
    if bad.field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        named = bad.field == "$" or bad.field in body["detail"]  # "$": the whole body
        if bad.field not in fields or not named:
            wrong.append(f"{where}: field {bad.field!r} not named ({fields})")
    elif "errors" in body and bad.status != 422:
        wrong.append(f"{where}: errors on an answer that is no input error")
    if bad.status == 401 and r.headers.get("www-authenticate") != "Bearer":
        wrong.append(f"{where}: no WWW-Authenticate: Bearer")
    if r.headers.get("x-content-type-options") != "nosniff":
        wrong.append(f"{where}: no security headers")
    leaked = [s for s in platform.secrets if s in r.text] + ["\\u0000"] * ("\\u0000" in r.text)
    if leaked:
        wrong.append(f"{where}: echoes {len(leaked)} secret(s) or a NUL")
    return wrong


@pytest.mark.parametrize("service", ["ingest", "scoring", "notify"])
def test_every_error_answer_is_a_problem_naming_the_field(platform: Platform, service: str) -> None:
    wrong = [line for bad in CASES[service] for line in _check(platform, service, bad)]
    assert not wrong, "\n".join(wrong)
