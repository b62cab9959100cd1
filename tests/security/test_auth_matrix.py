"""Authorization matrix over every /v1 route of the three services (read from their OpenAPI).

Roles: no token, service token, supervisor of the resource's team, supervisor of another
team, admin. The expected answer per route is the explicit table below (SPEC §4 and the
README); a route missing from it (added later) still gets the baseline every route must
meet: 401 without a token, never 401/403 for admin, never 5xx.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.security.conftest import Platform

ANY, SERVICE, ADMIN, READ, SCOPED, OPAQUE = "any", "service", "admin", "read", "scoped", "opaque"
# A helpdesk's own webhook: authenticated by the vendor's signature, which no bearer token
# replaces (Zammad here): 401 for every role.
VENDOR = "vendor"

# (service, METHOD, path) -> rule
#   any: every authenticated role; service: ingest intake (admin + service);
#   admin: admin only; read: admin + supervisors (results filtered to their teams);
#   scoped: admin + the supervisor of the resource's team, others 403;
#   opaque: resource id cannot be resolved here (random id): supervisors 403/404.
RULES: dict[tuple[str, str, str], str] = {
    ("ingest", "GET", "/v1/whoami"): ANY,
    ("ingest", "POST", "/v1/events"): SERVICE,
    ("ingest", "GET", "/v1/stats"): ADMIN,
    ("ingest", "POST", "/v1/webhooks/{vendor}"): VENDOR,
    ("ingest", "GET", "/v1/webhooks/unmapped"): ADMIN,
    ("scoring", "GET", "/v1/whoami"): ANY,
    ("scoring", "GET", "/v1/specialists/{specialist_id}/kpis"): SCOPED,
    ("scoring", "GET", "/v1/teams/{team_id}/kpis"): SCOPED,
    ("scoring", "GET", "/v1/leaderboard"): READ,
    ("scoring", "GET", "/v1/specialists/{specialist_id}/kpis/{kpi}/history"): SCOPED,
    ("scoring", "GET", "/v1/specialists/{specialist_id}/kpis/{kpi}/events"): SCOPED,
    ("scoring", "GET", "/v1/teams"): READ,
    ("scoring", "GET", "/v1/teams/{team_id}"): SCOPED,
    ("scoring", "PUT", "/v1/teams/{team_id}"): ADMIN,
    ("scoring", "GET", "/v1/specialists"): READ,
    ("scoring", "GET", "/v1/specialists/{specialist_id}"): SCOPED,
    ("scoring", "PUT", "/v1/specialists/{specialist_id}"): ADMIN,
    ("scoring", "GET", "/v1/platform/health"): READ,  # supervisors: without `detail`
    ("scoring", "GET", "/v1/platform/incidents"): ADMIN,
    ("scoring", "POST", "/v1/platform/incidents/{incident_id}/dismiss"): ADMIN,
    ("notify", "GET", "/v1/whoami"): ANY,
    ("notify", "GET", "/v1/channels"): READ,  # supervisors: their teams' channels, masked
    ("notify", "POST", "/v1/channels"): ADMIN,
    ("notify", "GET", "/v1/channels/{channel_id}"): OPAQUE,
    ("notify", "PUT", "/v1/channels/{channel_id}"): ADMIN,
    ("notify", "DELETE", "/v1/channels/{channel_id}"): ADMIN,
    ("notify", "GET", "/v1/alerts/stream"): READ,
    ("notify", "GET", "/v1/alerts"): READ,
    ("notify", "GET", "/v1/alerts/{alert_id}"): OPAQUE,
    ("notify", "POST", "/v1/alerts/{alert_id}/ack"): OPAQUE,
    ("notify", "GET", "/v1/alerts/{alert_id}/deliveries"): OPAQUE,
    ("notify", "GET", "/v1/deliveries"): READ,
    ("notify", "GET", "/v1/deliveries/{delivery_id}"): OPAQUE,
    ("notify", "POST", "/v1/deliveries/{delivery_id}/resend"): OPAQUE,
    ("notify", "GET", "/v1/silences"): READ,
    ("notify", "POST", "/v1/silences"): READ,
    ("notify", "DELETE", "/v1/silences/{silence_id}"): OPAQUE,
}
ROLES = ("none", "service", "supervisor", "other", "admin")


def _fill(path: str, p: Platform, method: str) -> str:
    # Writes go to throwaway ids: an accepted PUT must not move the fixture's specialist.
    scratch = f"sec-scratch-{uuid.uuid4().hex[:6]}"
    values = {
        "specialist_id": p.specialist if method == "GET" else scratch,
        "team_id": p.team if method == "GET" else scratch,
        "kpi": "resolution_rate",
        "quarter": "2026Q3",
        "path": "alerts",
        "vendor": "zammad",
    }
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        name = out[start + 1 : end]
        out = out[:start] + values.get(name, str(uuid.uuid4())) + out[end + 1 :]
    return out


def _query(op: dict[str, Any]) -> dict[str, str]:
    defaults = {"kpi": "resolution_rate", "window": "30d", "team": None}
    out = {}
    for param in op.get("parameters", []):
        if param.get("in") == "query" and param.get("required"):
            value = defaults.get(param["name"]) or "x"
            out[param["name"]] = value
    return out


def _operations(p: Platform) -> list[tuple[str, str, str, dict[str, Any]]]:
    ops = []
    for service, url in p.urls.items():
        spec = httpx.get(url + "/openapi.json", timeout=10).json()
        for path, methods in spec["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for method, op in methods.items():
                ops.append((service, method.upper(), path, op))
    return ops


def _call(p: Platform, service: str, method: str, path: str, op: dict[str, Any], who: str) -> int:
    url = p.urls[service] + _fill(path, p, method)
    body: Any = [] if (service, path) == ("ingest", "/v1/events") else {}
    kwargs: dict[str, Any] = {"params": _query(op), "headers": p.headers(who), "timeout": 10}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = body
    with httpx.stream(method, url, **kwargs) as r:  # SSE routes: headers are enough
        return r.status_code


def _ok(code: int) -> bool:
    return code not in (401, 403) and code < 500


def _expected(rule: str | None, who: str, code: int) -> bool:
    if code >= 500:
        return False
    if rule == VENDOR:
        return code == 401
    if who == "none":
        return code == 401
    if rule is None:  # not in the table: the baseline only
        return _ok(code) if who == "admin" else code != 401
    if who == "admin":
        return _ok(code)
    if rule == ANY:
        return code == 200
    if rule == SERVICE:
        return _ok(code) if who == "service" else code == 403
    if rule == ADMIN or who == "service":
        return code == 403
    if rule == READ:
        return _ok(code)
    if rule == SCOPED:
        return _ok(code) if who == "supervisor" else code == 403
    return code in (403, 404, 422)  # OPAQUE


@pytest.mark.timeout(180)
def test_every_route_answers_each_role_as_the_table_says(platform: Platform) -> None:
    ops = _operations(platform)
    seen = {(s, m, path) for s, m, path, _ in ops}
    assert set(RULES) <= seen, f"routes gone from the OpenAPI: {sorted(set(RULES) - seen)}"
    failures, rows = [], []
    for service, method, path, op in ops:
        rule = RULES.get((service, method, path))
        codes = {who: _call(platform, service, method, path, op, who) for who in ROLES}
        rows.append(f"{service:<8}{method:<7}{path:<58}{rule or '(baseline)':<11}{codes}")
        for who, code in codes.items():
            if not _expected(rule, who, code):
                failures.append(f"{service} {method} {path} as {who}: {code} (rule {rule})")
    print("\n".join(rows))
    assert not failures, "\n".join(failures)


def test_supervisor_of_another_team_sees_nothing_of_this_team(platform: Platform) -> None:
    url = platform.urls["scoring"]
    r = httpx.get(url + "/v1/specialists", headers=platform.headers("other"))
    assert r.status_code == 200
    assert platform.specialist not in r.text
    r = httpx.get(url + "/v1/teams", headers=platform.headers("other"))
    assert r.status_code == 200 and platform.team not in r.text
    r = httpx.get(url + "/v1/specialists", headers=platform.headers("supervisor"))
    assert platform.specialist in r.text
