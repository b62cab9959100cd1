"""The web dashboard: static assets, its bulk read routes, and a proxy to notify's alert API."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from services.scoring import queries
from services.scoring.app import (
    AsOfParam,
    Ctx,
    Reader,
    TeamFilter,
    WindowParam,
    check_team_visible,
    json_response,
    kpi_cell,
    or_404,
    pooled,
)
from services.scoring.kpi.grading import evaluate_all
from services.scoring.kpi.lines import KpiLine
from shared.catalogue import CATALOGUE, KPI_KEYS
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "dashboard" / "static"
UI_PREFIX = "/ui"

# (method, notify path below /v1/) the dashboard may call through the proxy; nothing else.
_PROXY_ALLOWED: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GET", re.compile(r"alerts")),
    ("GET", re.compile(r"alerts/stream")),
    ("POST", re.compile(r"alerts/[A-Za-z0-9_.:-]{1,128}/ack")),
    ("GET", re.compile(r"silences")),
    ("POST", re.compile(r"silences")),
    ("DELETE", re.compile(r"silences/[A-Za-z0-9_.:-]{1,128}")),
    ("GET", re.compile(r"deliveries")),
    ("GET", re.compile(r"deliveries/[0-9]{1,19}")),
    ("POST", re.compile(r"deliveries/[0-9]{1,19}/resend")),
)
_FORWARD_QUERY = frozenset(
    {"state", "status", "team", "specialist", "kpi", "limit", "active", "cursor"}
)
_REQUEST_TIMEOUT = httpx.Timeout(5.0, read=10.0)
_STREAM_TIMEOUT = httpx.Timeout(5.0, read=None)

# The overview's one statement: every visible specialist's window sums per metric.
_OVERVIEW_ALL = """
    SELECT s.id, s.name, s.team_id, k.metric, k.num, k.den
    FROM specialists s
    LEFT JOIN (
        SELECT d.specialist_id, d.metric, sum(d.num) AS num, sum(d.den) AS den
        FROM kpi_daily d
        WHERE d.day BETWEEN $1 AND $2
        GROUP BY d.specialist_id, d.metric
    ) k ON k.specialist_id = s.id
"""
_OVERVIEW_TEAMS = """
    SELECT s.id, s.name, s.team_id, k.metric, k.num, k.den
    FROM specialists s
    LEFT JOIN LATERAL (
        SELECT d.metric, sum(d.num) AS num, sum(d.den) AS den
        FROM kpi_daily d
        WHERE d.specialist_id = s.id AND d.day BETWEEN $1 AND $2
        GROUP BY d.metric
    ) k ON true
    WHERE s.team_id = ANY($3::text[])
"""


# The catalogue as the dashboard reads it (its lines come apart, with the overrides applied):
# labels, short labels and units are taken from here, never restated in the browser code.
_CATALOGUE_OUT: Final[dict[str, Any]] = {
    key: {
        "unit": kpi.unit,
        "higher_is_better": kpi.higher_is_better,
        "graded": kpi.graded,
        "names": {lang: asdict(names) for lang, names in kpi.names.items()},
    }
    for key, kpi in CATALOGUE.items()
}


def _line_out(line: KpiLine) -> dict[str, Any]:
    return {
        "qualified": line.qualified,
        "excellent": line.excellent,
        "min_samples": line.min_samples,
    }


async def overview_sums(
    db: queries.ReadDb, start: dt.date, end: dt.date, team_ids: Collection[str] | None
) -> list[queries.SpecialistSums]:
    """Window sums of every specialist (``team_ids`` None) or of the listed teams' members."""
    rows = await queries.fetch_for_teams(db, _OVERVIEW_ALL, _OVERVIEW_TEAMS, team_ids, start, end)
    found = queries.sums_by_specialist(rows)
    return sorted(found.values(), key=lambda m: m.specialist.id)


def _route_paths(app: FastAPI) -> set[str]:
    # The OpenAPI document (built once, then cached by FastAPI) lists every route, including
    # those of included routers, which app.routes may hold nested.
    return set(app.openapi().get("paths", {}))


def dashboard_router() -> APIRouter:
    router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])

    @router.get("/config", summary="What the dashboard needs to start: KPIs, lines, features")
    async def config(request: Request, principal: Reader, ctx: Ctx) -> Response:
        runtime: Runtime = request.app.state.runtime
        paths = _route_paths(request.app)
        return json_response(
            {
                "role": principal.role.value,
                "subject": principal.subject,
                "team_ids": sorted(principal.team_ids),
                "kpis": list(KPI_KEYS),
                "catalogue": _CATALOGUE_OUT,
                "lines": {
                    key: {**_line_out(line), "higher_is_better": line.higher_is_better}
                    for key, line in ctx.lines.items()
                },
                "timezone": ctx.tz.key,
                "today": ctx.today.isoformat(),
                "alert_window": runtime.settings.alert_window,
                "features": {
                    "appraisals": "/v1/appraisals/{quarter}" in paths,
                    "specialist_appraisals": "/v1/specialists/{specialist_id}/appraisals/{quarter}"
                    in paths,
                    "improvement_plans": "/v1/specialists/{specialist_id}/plans/{quarter}" in paths,
                },
            }
        )

    @router.get("/overview", summary="Every visible specialist's KPIs, per-team and total pooled")
    async def overview(
        principal: Reader,
        ctx: Ctx,
        window: WindowParam = "30d",
        as_of: AsOfParam = None,
        team: TeamFilter = None,
    ) -> Response:
        win = ctx.window(window, as_of)
        if team is not None:
            check_team_visible(principal, team)
            # Unlike the listings, an unknown team is a 404 for supervisors too.
            or_404(await queries.get_team(ctx.db, team), "team", team)
            team_ids: list[str] | None = [team]
        else:
            team_ids = None if principal.is_admin else sorted(principal.team_ids)
        teams = await queries.list_teams(ctx.db, team_ids)
        members = await overview_sums(ctx.db, win.start, win.end, team_ids)
        by_team: dict[str | None, list[queries.SpecialistSums]] = {}
        for m in members:
            by_team.setdefault(m.specialist.team_id, []).append(m)
        return json_response(
            {
                "window": ctx.window_out(win),
                # Lines are sent once here, not repeated in each of ~8,000 cells.
                "lines": {key: _line_out(line) for key, line in ctx.lines.items()},
                "pooled": {
                    k: kpi_cell(v) for k, v in evaluate_all(pooled(members), win, ctx.lines).items()
                },
                "teams": [
                    {
                        "team_id": t.id,
                        "name": t.name,
                        "supervisor": t.supervisor,
                        "members": len(by_team.get(t.id, [])),
                        "kpis": {
                            k: kpi_cell(v)
                            for k, v in evaluate_all(
                                pooled(by_team.get(t.id, [])), win, ctx.lines
                            ).items()
                        },
                    }
                    for t in teams
                ],
                "members": [
                    {
                        "specialist_id": m.specialist.id,
                        "name": m.specialist.name,
                        "team_id": m.specialist.team_id,
                        "kpis": {
                            k: kpi_cell(v) for k, v in evaluate_all(m.sums, win, ctx.lines).items()
                        },
                    }
                    for m in members
                ],
            }
        )

    async def notify_proxy(path: str, request: Request) -> Response:
        method = request.method
        if not any(m == method and rx.fullmatch(path) for m, rx in _PROXY_ALLOWED):
            return JSONResponse(
                {"detail": f"{method} {path} is not available through the dashboard"}, 404
            )
        return await _forward(request, path)

    summary = (
        "The dashboard's calls to notify (alerts, ack, silences, SSE, failed deliveries and "
        "resend), same origin"
    )

    @router.get("/notify/{path:path}", summary=summary)
    async def notify_get(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    @router.post("/notify/{path:path}", summary=summary)
    async def notify_post(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    @router.delete("/notify/{path:path}", summary=summary)
    async def notify_delete(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    return router


def _client(request: Request) -> httpx.AsyncClient:
    """One pooled client per process, created on first use and closed with the runtime."""
    client: httpx.AsyncClient | None = getattr(request.app.state, "notify_client", None)
    if client is None:
        runtime: Runtime = request.app.state.runtime
        client = httpx.AsyncClient(
            base_url=runtime.settings.notify_base_url + "/v1/",
            timeout=_REQUEST_TIMEOUT,
        )
        request.app.state.notify_client = client
        runtime.stoppers.append(client.aclose)
    return client


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"alerts unavailable: {reason}", "unavailable": "notify"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _forward(request: Request, path: str) -> Response:
    client = _client(request)
    headers = {"authorization": request.headers.get("authorization", "")}
    params = {k: v for k, v in request.query_params.items() if k in _FORWARD_QUERY}
    body = await request.body()
    if body:
        headers["content-type"] = "application/json"
    stream = path == "alerts/stream"
    timeout = _REQUEST_TIMEOUT
    if stream:
        # The resume point of a reconnecting dashboard: notify replays what it missed.
        last_id = request.headers.get("last-event-id")
        if last_id is not None:
            headers["last-event-id"] = last_id
        # Quiet periods are normal on a stream (notify sends a keep-alive every 15 s).
        timeout = _STREAM_TIMEOUT
    try:
        upstream = await client.send(
            client.build_request(
                request.method, path, params=params, content=body, headers=headers,
                timeout=timeout,
            ),
            stream=stream,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        logger.warning("notify proxy %s %s: %s", request.method, path, type(exc).__name__)
        return _unavailable(f"notify service unreachable ({type(exc).__name__})")
    if upstream.status_code >= 500:
        await upstream.aclose()
        return _unavailable(f"notify answered {upstream.status_code}")
    if not stream:
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )
    if upstream.status_code != 200:
        await upstream.aread()
        await upstream.aclose()
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            # notify went away mid-stream: end the stream, the browser reconnects by itself.
            return
        finally:
            await upstream.aclose()

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _StaticFiles(StaticFiles):
    """Static assets revalidated on every load (ETag), so a new release is never stale."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Add the dashboard routes, the static UI under /ui and the / redirect to ``app``."""
    app.include_router(dashboard_router())

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(UI_PREFIX + "/")

    app.mount(UI_PREFIX, _StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")


__all__ = ["dashboard_router", "install", "overview_sums"]
