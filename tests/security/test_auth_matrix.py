"""Authorization matrix: every route of the three services, every caller, the exact status.

The routes are read from each app (its OpenAPI document plus the routes outside it: /metrics,
the docs, the dashboard's static files); a route without a row in ROWS fails the first test,
naming the row to add. Each row fills its parameters with real resources of one team, so the
supervisor of that team gets the success status, the supervisor of another team a 404 with
the same body as an id that does not exist (no probing of other teams' ids), and every other
caller its exact status: no token, a malformed one and a revoked admin token 401, a service
token 403 outside intake, a supervisor 403 on admin-only routes. A specialist token is bound to
one specialist: on the routes about one specialist it gets its own records (spec_own) and, for
anyone else's id, even a colleague's in the same team (spec_other), the unknown-id 404; every
team-level, listing, platform, directory-write and notify route is a 403 for it.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.routing import BaseRoute, Mount

from shared.embedded import EmbeddedPostgres
from shared.problems import MEDIA_TYPE
from tests.security.matrix_world import CALLERS, FRESH, OWNED, World, channel_body, matrix_world

SERVICES = ("ingest", "scoring", "notify")
Key = tuple[str, str, str]  # (service, METHOD, path as in the OpenAPI document)


def _statuses(ok: int, **by_caller: int) -> dict[str, int]:
    unauthenticated = {"none": 401, "malformed": 401, "revoked": 401}
    people = {"admin": ok, "own": ok, "other": ok}
    # A specialist reaches only the routes about themself (mine, self_only below).
    specialists = {"spec_own": 403, "spec_other": 403}
    return {**unauthenticated, "service": 403, **people, **specialists, **by_caller}


def public(ok: int) -> dict[str, int]:
    return dict.fromkeys(CALLERS, ok)


def anyone(ok: int) -> dict[str, int]:
    """Any valid token."""
    return _statuses(ok, service=ok, spec_own=ok, spec_other=ok)


def people(ok: int) -> dict[str, int]:
    """Any person's token (not a service's): each sees what concerns them."""
    return _statuses(ok, spec_own=ok, spec_other=ok)


def intake(ok: int) -> dict[str, int]:
    return _statuses(ok, service=ok, own=403, other=403)


def admin_only(ok: int) -> dict[str, int]:
    return _statuses(ok, own=403, other=403)


def listing(ok: int) -> dict[str, int]:
    """Supervisors read, each only their teams' part (checked by the listing test below)."""
    return _statuses(ok)


def scoped(ok: int) -> dict[str, int]:
    """A resource of the owning team: another team's supervisor gets the unknown-id 404."""
    return _statuses(ok, other=404)


def mine(ok: int) -> dict[str, int]:
    """A specialist's own record: also theirs to read; a colleague gets the unknown-id 404."""
    return _statuses(ok, other=404, spec_own=ok, spec_other=404)


def self_only(ok: int) -> dict[str, int]:
    """What only the specialist does for themself (acknowledge, comment): 403 for every other
    role, whatever the id; another specialist naming this one gets the unknown-id 404."""
    return _statuses(ok, admin=403, own=403, other=403, spec_own=ok, spec_other=404)


@dataclass(frozen=True)
class Row:
    """One request shape of a route. Strings in ``path``, ``query`` and ``body`` are templates:
    ``{kind}`` is the owning team's resource (World.refs), ``{fresh_kind}`` one made for this
    call alone, ``{uuid}`` a new uuid."""

    expect: Mapping[str, int]
    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    stream: bool = False


SPECIALIST = {"specialist_id": "{specialist}"}
HISTORY = {**SPECIALIST, "kpi": "resolution_rate"}
DISTRIBUTION = {**SPECIALIST, "kpi": "avg_response_time_hours"}
BY_CHANNEL = {"by": "channel"}
PLAN = {**SPECIALIST, "quarter": "{quarter}"}
PAST = {**SPECIALIST, "quarter": "{past_quarter}"}
MEETING = {**SPECIALIST, "meeting_id": "{meeting}"}
HELD = {"quarter": "{past_quarter}", "held_on": "{today}", "participants": ["mx-ann"],
        "notes": "matrix"}  # fmt: skip
TEAM_FILTER = {"team": "{team}"}
SILENCE_BODY = {"specialist_id": "{specialist}", "kpi": "nps", "until": "{tomorrow}"}
EVENT = {
    "event_id": "mx-{uuid}",
    "type": "ticket.created",
    "occurred_at": "{now}",
    "ticket_id": "mx-t-{uuid}",
}
STATIC = "static"  # a mount's row: every file under it, for everyone


def proxy(path: str, expect: dict[str, int], **kw: Any) -> Row:
    return Row(expect, path={"path": path}, **kw)


ROWS: dict[Key, list[Row] | str] = {
    ("ingest", "GET", "/v1/whoami"): [Row(anyone(200))],
    ("ingest", "POST", "/v1/events"): [Row(intake(202), body=EVENT)],
    ("ingest", "GET", "/v1/stats"): [Row(admin_only(200))],
    # A helpdesk's own webhook is authenticated by the vendor's signature, which no bearer
    # token replaces (Zammad: HMAC of the body); an unknown vendor is a 404 naming the known.
    ("ingest", "POST", "/v1/webhooks/{vendor}"): [
        Row(public(401), path={"vendor": "zammad"}, body={"ticket": {"id": 1}}),
        Row(public(404), path={"vendor": "nope"}, body={}),
    ],
    ("ingest", "GET", "/v1/webhooks/unmapped"): [Row(admin_only(200))],
    ("scoring", "GET", "/"): [Row(public(307))],
    ("scoring", "GET", "/ui/{file}"): STATIC,
    ("scoring", "GET", "/v1/whoami"): [Row(anyone(200))],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/kpis"): [
        Row(mine(200), SPECIALIST),
        Row(mine(200), SPECIALIST, query=BY_CHANNEL),
    ],
    ("scoring", "GET", "/v1/teams/{team_id}/kpis"): [
        Row(scoped(200), {"team_id": "{team}"}),
        Row(scoped(200), {"team_id": "{team}"}, query=BY_CHANNEL),
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/kpis/{kpi}/distribution"): [
        Row(mine(200), DISTRIBUTION)
    ],
    ("scoring", "GET", "/v1/teams/{team_id}/kpis/{kpi}/distribution"): [
        Row(scoped(200), {"team_id": "{team}", "kpi": "avg_response_time_hours"})
    ],
    ("scoring", "GET", "/v1/teams/{team_id}/kpis/{kpi}/history"): [
        Row(scoped(200), {"team_id": "{team}", "kpi": "resolution_rate"})
    ],
    ("scoring", "GET", "/v1/teams/{team_id}/digest"): [Row(scoped(200), {"team_id": "{team}"})],
    # Sending is once per team and period: a repeated send answers 200 and sends nothing.
    ("scoring", "POST", "/v1/teams/{team_id}/digest/send"): [
        Row(admin_only(200), {"team_id": "{team}"})
    ],
    ("scoring", "GET", "/v1/leaderboard"): [
        Row(listing(200), query={"kpi": "nps"}),
        Row(scoped(200), query={"kpi": "nps", **TEAM_FILTER}),
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/kpis/{kpi}/history"): [
        Row(mine(200), HISTORY)
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/kpis/{kpi}/events"): [
        Row(mine(200), HISTORY)
    ],
    ("scoring", "GET", "/v1/teams"): [Row(listing(200))],
    ("scoring", "GET", "/v1/teams/{team_id}"): [Row(scoped(200), {"team_id": "{team}"})],
    ("scoring", "PUT", "/v1/teams/{team_id}"): [
        Row(admin_only(200), {"team_id": "{team}"}, body={"name": "{team}", "supervisor": None})
    ],
    ("scoring", "GET", "/v1/specialists"): [
        Row(listing(200)),
        Row(scoped(200), query=TEAM_FILTER),
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}"): [Row(mine(200), SPECIALIST)],
    ("scoring", "PUT", "/v1/specialists/{specialist_id}"): [
        Row(admin_only(200), SPECIALIST, body={"name": "Matrix", "team_id": "{team}"})
    ],
    # A str body goes as text/csv; importing the same row again is a no-op for every caller.
    ("scoring", "POST", "/v1/specialists/import"): [
        Row(admin_only(200), body="id,name,team_id\n{specialist},Matrix,{team}\n")
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/appraisals/{quarter}"): [
        Row(mine(200), PLAN)
    ],
    ("scoring", "POST", "/v1/specialists/{specialist_id}/appraisals/{quarter}/acknowledge"): [
        Row(self_only(200), PAST)
    ],
    ("scoring", "PUT", "/v1/specialists/{specialist_id}/appraisals/{quarter}/comment"): [
        Row(self_only(200), PAST, body={"text": "matrix"})
    ],
    ("scoring", "PUT", "/v1/specialists/{specialist_id}/appraisals/{quarter}/decision"): [
        Row(scoped(200), PAST, body={"type": "recognition", "note": "matrix"})
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/appraisals/{quarter}/decisions"): [
        Row(mine(200), PAST)
    ],
    ("scoring", "GET", "/v1/appraisals/{quarter}"): [
        Row(listing(200), {"quarter": "{quarter}"}),
        Row(scoped(200), {"quarter": "{quarter}"}, query=TEAM_FILTER),
        Row(scoped(200), {"quarter": "{quarter}"}, query={**TEAM_FILTER, "format": "csv"}),
        Row(scoped(200), {"quarter": "{quarter}"}, query={**TEAM_FILTER, "format": "xlsx"}),
    ],
    # A team-level export (specialists: 403): a supervisor names one of their teams (without
    # one: 422 naming `team`), an admin may omit it for every ticket.
    ("scoring", "GET", "/v1/tickets"): [
        Row(scoped(200), query={**TEAM_FILTER, "format": "csv"}),
        Row(scoped(200), query={**TEAM_FILTER, "format": "xlsx"}),
        Row(scoped(200), query={**TEAM_FILTER, "specialist": "{specialist}", "format": "csv"}),
        Row(_statuses(200, own=422, other=422), query={"format": "csv"}),
    ],
    # Finalising again freezes nothing new: every caller that may finalise gets its 200.
    ("scoring", "POST", "/v1/appraisals/{quarter}/finalize"): [
        Row(scoped(200), {"quarter": "{past_quarter}"}, query=TEAM_FILTER),
        Row(listing(200), {"quarter": "{past_quarter}"}),
    ],
    ("scoring", "GET", "/v1/appraisals/{quarter}/finalize/preview"): [
        Row(scoped(200), {"quarter": "{past_quarter}"}, query=TEAM_FILTER),
        Row(listing(200), {"quarter": "{quarter}"}),
    ],
    ("scoring", "GET", "/v1/appraisals/{quarter}/cycle"): [
        Row(scoped(200), {"quarter": "{past_quarter}"}, query=TEAM_FILTER),
        Row(listing(200), {"quarter": "{past_quarter}"}),
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/meetings"): [Row(mine(200), SPECIALIST)],
    ("scoring", "POST", "/v1/specialists/{specialist_id}/meetings"): [
        Row(
            scoped(201),
            SPECIALIST,
            body={"date": "{today}", "participants": ["mx-ann"], "notes": "matrix"},
        )
    ],
    ("scoring", "PUT", "/v1/specialists/{specialist_id}/meetings/{meeting_id}"): [
        Row(scoped(200), MEETING, body=HELD)
    ],
    ("scoring", "PATCH", "/v1/specialists/{specialist_id}/meetings/{meeting_id}"): [
        Row(scoped(200), MEETING, body={"notes": "matrix"})
    ],
    ("scoring", "POST", "/v1/specialists/{specialist_id}/meetings/{meeting_id}/acknowledge"): [
        Row(self_only(200), MEETING)
    ],
    ("scoring", "GET", "/v1/specialists/{specialist_id}/plans/{quarter}"): [Row(mine(200), PLAN)],
    ("scoring", "POST", "/v1/specialists/{specialist_id}/plans/{quarter}/notes"): [
        Row(mine(201), PLAN, body={"text": "matrix"})
    ],
    ("scoring", "PUT", "/v1/specialists/{specialist_id}/plans/{quarter}"): [
        Row(
            scoped(200),
            PLAN,
            body={"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "{today}"}]},
        )
    ],
    # open -> open is allowed, so every successful caller finds the plan as it was.
    ("scoring", "POST", "/v1/specialists/{specialist_id}/plans/{quarter}/status"): [
        Row(scoped(200), PLAN, body={"status": "open"})
    ],
    ("scoring", "GET", "/v1/plans"): [Row(listing(200)), Row(scoped(200), query=TEAM_FILTER)],
    # Signing in needs no credentials; a wrong password is the same 401 for every caller.
    ("scoring", "POST", "/v1/auth/login"): [
        Row(public(401), body={"username": "mx-nobody-{uuid}", "password": "not the password"})
    ],
    # What the sign-in page offers is asked before anyone is signed in.
    ("scoring", "GET", "/v1/auth/methods"): [Row(public(200))],
    # Single sign-on starts and ends without credentials (the provider sends the browser back
    # with none); here its provider is unreachable, so the start is refused, and a callback
    # without this browser's sign-in under way is refused too: each a redirect to the sign-in
    # page (303), whoever calls. tests/integration/test_oidc.py covers a real provider.
    ("scoring", "GET", "/v1/auth/oidc/login"): [Row(public(303))],
    ("scoring", "GET", "/v1/auth/oidc/callback"): [
        Row(public(303), query={"code": "mx-{uuid}", "state": "mx-{uuid}"})
    ],
    ("scoring", "POST", "/v1/auth/logout"): [Row(anyone(204))],
    ("scoring", "GET", "/v1/auth/session"): [Row(anyone(200))],
    # Only a signed-in user has a password to change: every token is refused.
    ("scoring", "POST", "/v1/auth/password"): [
        Row(
            _statuses(403, service=403),
            body={"current_password": "matrix password 2026", "new_password": "x" * 12},
        )
    ],
    ("scoring", "GET", "/v1/users"): [Row(admin_only(200))],
    ("scoring", "POST", "/v1/users"): [
        Row(
            admin_only(201),
            body={"username": "mx-{uuid}", "password": "matrix password", "role": "admin"},
        )
    ],
    ("scoring", "PUT", "/v1/users/{username}"): [
        Row(admin_only(200), {"username": "{user}"}, body={"display_name": "Matrix"})
    ],
    ("scoring", "POST", "/v1/users/{username}/password"): [
        Row(admin_only(204), {"username": "{user}"}, body={"password": "matrix password 2026"})
    ],
    ("scoring", "GET", "/v1/tokens"): [Row(admin_only(200))],
    ("scoring", "POST", "/v1/tokens"): [
        Row(admin_only(201), body={"role": "service", "subject": "mx", "expires_in": "1d"})
    ],
    ("scoring", "DELETE", "/v1/tokens/{token_id}"): [
        Row(admin_only(204), {"token_id": "{fresh_token}"})
    ],
    ("scoring", "GET", "/v1/platform/health"): [Row(listing(200))],
    ("scoring", "GET", "/v1/platform/incidents"): [Row(admin_only(200))],
    ("scoring", "POST", "/v1/platform/incidents/{incident_id}/dismiss"): [
        Row(admin_only(200), {"incident_id": "{fresh_incident}"})
    ],
    ("scoring", "GET", "/v1/dashboard/config"): [Row(people(200))],
    ("scoring", "GET", "/v1/dashboard/overview"): [
        Row(listing(200)),
        Row(scoped(200), query=TEAM_FILTER),
    ],
    # The dashboard's proxy: each call it allows answers as notify's own route does.
    ("scoring", "GET", "/v1/dashboard/notify/{path}"): [
        proxy("alerts", listing(200)),
        proxy("alerts", scoped(200), query=TEAM_FILTER),
        proxy("alerts/stream", listing(200), stream=True),
        proxy("silences", listing(200)),
        proxy("deliveries", listing(200)),
        proxy("deliveries", scoped(200), query=TEAM_FILTER),
        proxy("deliveries/{delivery}", scoped(200)),
        proxy("channels", listing(200)),
        proxy("channels/{channel}", scoped(200)),
        proxy("stats", listing(404)),  # not on the allow-list
    ],
    ("scoring", "POST", "/v1/dashboard/notify/{path}"): [
        proxy("alerts/{alert}/ack", scoped(200)),
        proxy("silences", scoped(201), body=SILENCE_BODY),
        proxy("deliveries/{fresh_delivery}/resend", scoped(200)),
        proxy(
            "channels",
            admin_only(201),
            body=channel_body("mx proxied", "{team}", "{receiver}", False),
        ),
        proxy("channels/{channel}/test", admin_only(200)),
    ],
    ("scoring", "PUT", "/v1/dashboard/notify/{path}"): [
        proxy(
            "channels/{channel}",
            admin_only(200),
            body=channel_body("mx scoped", "{team}", "{receiver}", False),
        )
    ],
    ("scoring", "DELETE", "/v1/dashboard/notify/{path}"): [
        proxy("silences/{fresh_silence}", scoped(204)),
        proxy("channels/{fresh_channel}", admin_only(204)),
    ],
    ("scoring", "GET", "/v1/dashboard/ingest/webhooks/unmapped"): [Row(admin_only(200))],
    ("notify", "GET", "/v1/whoami"): [Row(anyone(200))],
    ("notify", "GET", "/v1/channels"): [Row(listing(200))],
    ("notify", "POST", "/v1/channels"): [
        Row(admin_only(201), body=channel_body("mx new", "{team}", "{receiver}", False))
    ],
    ("notify", "GET", "/v1/channels/{channel_id}"): [Row(scoped(200), {"channel_id": "{channel}"})],
    ("notify", "PUT", "/v1/channels/{channel_id}"): [
        Row(
            admin_only(200),
            {"channel_id": "{channel}"},
            body=channel_body("mx scoped", "{team}", "{receiver}", False),
        )
    ],
    ("notify", "DELETE", "/v1/channels/{channel_id}"): [
        Row(admin_only(204), {"channel_id": "{fresh_channel}"})
    ],
    # The matrix's receiver refuses (400): the test answers 200 with status "failed".
    ("notify", "POST", "/v1/channels/{channel_id}/test"): [
        Row(admin_only(200), {"channel_id": "{channel}"})
    ],
    ("notify", "GET", "/v1/alerts/stream"): [Row(listing(200), stream=True)],
    ("notify", "GET", "/v1/alerts"): [Row(listing(200)), Row(scoped(200), query=TEAM_FILTER)],
    ("notify", "GET", "/v1/alerts/{alert_id}"): [Row(scoped(200), {"alert_id": "{alert}"})],
    ("notify", "POST", "/v1/alerts/{alert_id}/ack"): [Row(scoped(200), {"alert_id": "{alert}"})],
    ("notify", "GET", "/v1/alerts/{alert_id}/deliveries"): [
        Row(scoped(200), {"alert_id": "{alert}"})
    ],
    ("notify", "GET", "/v1/deliveries"): [
        Row(listing(200)),
        Row(scoped(200), query=TEAM_FILTER),
    ],
    ("notify", "GET", "/v1/deliveries/{delivery_id}"): [
        Row(scoped(200), {"delivery_id": "{delivery}"})
    ],
    ("notify", "POST", "/v1/deliveries/{delivery_id}/resend"): [
        Row(scoped(200), {"delivery_id": "{fresh_delivery}"})
    ],
    ("notify", "POST", "/v1/silences"): [Row(scoped(201), body=SILENCE_BODY)],
    ("notify", "GET", "/v1/silences"): [Row(listing(200))],
    ("notify", "DELETE", "/v1/silences/{silence_id}"): [
        Row(scoped(204), {"silence_id": "{fresh_silence}"})
    ],
}
# What every service has and anyone may read: health, metrics, the API's documentation.
for _service in SERVICES:
    for _path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"):
        ROWS[(_service, "GET", _path)] = [Row(public(200))]
    ROWS[(_service, "GET", "/docs/oauth2-redirect")] = [Row(public(200))]


def _flat(routes: list[BaseRoute]) -> Iterator[tuple[str, BaseRoute]]:
    """(full path, route) of every route, included routers' too."""
    try:  # FastAPI >= 0.13x keeps included routers nested in app.routes
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older ones copy their routes into app.routes
        yield from ((getattr(r, "path", ""), r) for r in routes)
        return
    for context in iter_route_contexts(routes):
        yield context.path or "", context.original_route


def discover() -> tuple[set[Key], dict[Key, Path]]:
    """Every (service, method, path) the apps serve, and the directory behind each mount."""
    keys: set[Key] = set()
    mounts: dict[Key, Path] = {}
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.app").build_app()
        for path, operations in app.openapi()["paths"].items():
            keys.update((service, method.upper(), path) for method in operations)
        for path, route in _flat(app.routes):
            if isinstance(route, Mount):
                key = (service, "GET", path + "/{file}")
                keys.add(key)
                mounts[key] = Path(route.app.directory)  # type: ignore[attr-defined]
                continue
            if getattr(route, "include_in_schema", False):
                continue  # in the OpenAPI document, read above
            # HEAD is answered wherever GET is; it is not a route of its own.
            methods = set(getattr(route, "methods", None) or ()) - {"HEAD"}
            keys.update((service, method, path) for method in methods)
    return keys, mounts


def rows_of(key: Key, mounts: Mapping[Key, Path]) -> list[Row]:
    rows = ROWS[key]
    if rows != STATIC:
        assert isinstance(rows, list)
        return rows
    root = mounts[key]
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    # "" is the directory itself: its index.html.
    return [Row(public(200), {"file": f}) for f in ["", *files]]


def test_every_route_has_a_row() -> None:
    keys, _ = discover()
    missing = sorted(keys - set(ROWS))
    stale = sorted(set(ROWS) - keys)
    hint = "\n".join(f'    ("{s}", "{m}", "{p}"): [Row(...)],' for s, m, p in missing)
    assert not missing, f"routes without a row: add them to ROWS in {__file__}:\n{hint}"
    assert not stale, f"rows for routes that no longer exist (remove them): {stale}"


# ---------------------------------------------------------------------------
# Running the matrix against one set of services
# ---------------------------------------------------------------------------


class _Values(dict[str, str]):
    """Template values of one request; resolved on first use, remembered for the request."""

    def __init__(self, world: World, ghost: bool) -> None:
        super().__init__()
        self.world, self.ghost = world, ghost
        self.owned: list[str] = []  # the owning team's ids this request names

    def __missing__(self, key: str) -> str:
        kind = key.removeprefix("fresh_")
        if key == "uuid":
            value = uuid.uuid4().hex
        elif self.ghost and kind in self.world.ghosts:
            value = self.world.ghosts[kind]
        elif key.startswith("fresh_"):
            value = self.world.take(kind)
        else:
            value = self.world.refs[key]
        if kind in OWNED:
            self.owned.append(value)
        self[key] = value
        return value

    def fill(self, template: Any) -> Any:
        if isinstance(template, str):
            return template.format_map(self)
        if isinstance(template, list):
            return [self.fill(t) for t in template]
        if isinstance(template, dict):
            return {k: self.fill(v) for k, v in template.items()}
        return template


@dataclass
class Result:
    key: Key
    index: int
    caller: str
    ghost: bool
    url: str
    status: int
    text: str
    owned: list[str]
    expected: int
    content_type: str = ""

    def normalized(self) -> str:
        text = self.text
        if self.content_type == MEDIA_TYPE and text:
            # A problem's instance is the request's own path: it tells the caller nothing new.
            problem = orjson.loads(text)
            problem.pop("instance", None)
            text = orjson.dumps(problem).decode()
        for value in sorted(self.owned, key=len, reverse=True):
            text = text.replace(value, "{id}")
        return text


async def _send(
    client: httpx.AsyncClient, world: World, key: Key, index: int, row: Row, caller: str,
    ghost: bool, gate: asyncio.Semaphore,
) -> Result:  # fmt: skip
    service, method, route = key
    values = _Values(world, ghost)
    url = world.urls[service] + route.format_map({k: values.fill(v) for k, v in row.path.items()})
    body = values.fill(row.body)
    csv = {"Content-Type": "text/csv"} if isinstance(body, str) else {}
    request = client.build_request(
        method, url, params=values.fill(dict(row.query)),
        json=body if body is not None and not csv else None,
        content=body.encode() if csv else None,
        headers={**world.headers(caller), **csv},
    )  # fmt: skip
    async with gate:
        response = await client.send(request, stream=True)
        try:
            # A stream (server-sent events) never ends: its status and headers are the answer.
            text = "" if row.stream else (await response.aread()).decode(errors="replace")
        finally:
            await response.aclose()
    return Result(
        key, index, caller, ghost, str(response.url), response.status_code, text,
        values.owned, row.expect[caller], response.headers.get("content-type", ""),
    )  # fmt: skip


async def _run(world: World, plan: list[tuple[Key, int, Row]]) -> list[Result]:
    gate = asyncio.Semaphore(8)  # two cores, shared with other people's tests
    async with httpx.AsyncClient(timeout=60) as client:
        calls = [
            _send(client, world, key, index, row, caller, False, gate)
            for key, index, row in plan
            for caller in CALLERS
        ]
        # The other team's supervisor and the colleague again, with unknown ids in place of
        # the team's own.
        calls += [
            _send(client, world, key, index, row, caller, True, gate)
            for key, index, row in plan
            for caller in ("other", "spec_other")
            if row.expect[caller] == 404
        ]
        return list(await asyncio.gather(*calls))


def _fresh_needed(plan: list[tuple[Key, int, Row]]) -> Counter[str]:
    needed: Counter[str] = Counter()
    for _, _, row in plan:
        text = repr((row.path, row.query, row.body))
        for kind in FRESH:
            needed[kind] += text.count("{fresh_" + kind + "}") * len(CALLERS)
    return needed


@pytest.fixture(scope="module")
def matrix(
    pg_server: EmbeddedPostgres, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, list[Result]]]:
    keys, mounts = discover()
    plan = [
        (key, index, row)
        for key in sorted(keys & set(ROWS))
        for index, row in enumerate(rows_of(key, mounts))
    ]
    log_dir = tmp_path_factory.mktemp("matrix-logs")
    with matrix_world(pg_server, bootstrap, log_dir, _fresh_needed(plan)) as world:
        yield world, asyncio.run(_run(world, plan))


def _line(r: Result) -> str:
    service, method, route = r.key
    who = f"{r.caller}{' (unknown ids)' if r.ghost else ''}"
    got = f"{r.status}, want {r.expected}"
    return f"{service} {method} {route} [{r.index}] as {who}: {got} ({r.url})"


@pytest.mark.timeout(300)
def test_every_route_answers_every_caller_exactly(matrix: tuple[World, list[Result]]) -> None:
    _, results = matrix
    wrong = [_line(r) + f" {r.text[:160]}" for r in results if r.status != r.expected]
    assert not wrong, f"{len(wrong)} of {len(results)} answers differ:\n" + "\n".join(wrong)
    assert {r.caller for r in results} == set(CALLERS)
    # Every refusal is a problem (RFC 9457) whose status is the answer's.
    refusals = [r for r in results if r.status in (401, 403, 404)]
    not_problems = [
        f"{_line(r)} {r.content_type} {r.text[:160]}"
        for r in refusals
        # (a stream's body is not read: its content type is the answer)
        if r.content_type != MEDIA_TYPE or (r.text and orjson.loads(r.text)["status"] != r.status)
    ]
    assert not not_problems, "refusals that are no problem:\n" + "\n".join(not_problems)
    assert len(refusals) > 100, len(refusals)


def test_another_teams_ids_answer_like_unknown_ones(matrix: tuple[World, list[Result]]) -> None:
    _, results = matrix
    by_call = {
        (r.caller, r.key, r.index, r.ghost): r
        for r in results
        if r.caller in ("other", "spec_other")
    }
    compared, differ = 0, []
    for (caller, key, index, ghost), unknown in by_call.items():
        if not ghost:
            continue
        real = by_call[(caller, key, index, False)]
        if not real.owned:
            continue  # the row names nothing of the team (e.g. a route off the allow-list)
        compared += 1
        if (real.status, real.normalized()) != (unknown.status, unknown.normalized()):
            differ.append(
                f"{_line(real)} {real.text!r}\n    unknown ids: {unknown.status} {unknown.text!r}"
            )
    assert not differ, "another team's ids are told apart from unknown ones:\n" + "\n".join(differ)
    # Every scoped row (notify's and the dashboard proxy's too), and every specialist's own.
    assert compared >= 50, compared


def test_listings_show_another_supervisor_nothing_of_the_team(
    matrix: tuple[World, list[Result]],
) -> None:
    world, results = matrix
    secrets = [world.refs[k] for k in ("team", "specialist", "alert", "channel", "silence")]
    leaks = [
        f"{_line(r)} shows {[s for s in secrets if s in r.text]}"
        for r in results
        if r.caller in ("other", "spec_other")
        and r.status < 300
        and any(s in r.text for s in secrets)
    ]
    assert not leaks, "\n".join(leaks)
    # And the own team's supervisor does see them (the check above is not vacuous).
    own = " ".join(r.text for r in results if r.caller == "own" and r.status == 200)
    assert all(s in own for s in secrets)
