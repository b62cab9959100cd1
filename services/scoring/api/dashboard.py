"""The web dashboard: its start-up and bulk read routes, the static UI and the / redirect."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from services.scoring import queries
from services.scoring.api.deps import Ctx, Reader, Viewer
from services.scoring.api.ingest_proxy import ingest_proxy_router
from services.scoring.api.notify_proxy import notify_proxy_router
from services.scoring.api.params import DEFAULT_WINDOW, AsOfParam, TeamFilter, WindowParam
from services.scoring.api.render import json_response, kpi_cell, pooled
from services.scoring.api.schemas import DashboardConfig, Overview
from services.scoring.api.scope import known_teams
from services.scoring.kpi.grading import evaluate_all
from services.scoring.kpi.lines import KpiLine
from shared.catalogue import CATALOGUE, KPI_KEYS
from shared.runtime import Runtime

STATIC_DIR = Path(__file__).resolve().parents[1] / "dashboard" / "static"
UI_PREFIX = "/ui"
# Served without a token (the page signs in by itself) under the dashboard's CSP.
DASHBOARD_PATHS = ("/", UI_PREFIX)
DASHBOARD_PREFIXES = (UI_PREFIX + "/",)

# The catalogue as the dashboard reads it (its lines come apart, with the overrides applied):
# labels, short labels and units are taken from here, never restated in the browser code.
_CATALOGUE_OUT: Final[dict[str, Any]] = {
    key: {
        "unit": kpi.unit,
        "higher_is_better": kpi.higher_is_better,
        "graded": kpi.graded,
        # False for the informational measures of SPEC §3a: shown after the appraised KPIs.
        "appraised": kpi.appraised,
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


def _route_paths(app: FastAPI) -> set[str]:
    # The OpenAPI document (built once, then cached by FastAPI) lists every route, including
    # those of included routers, which app.routes may hold nested.
    return set(app.openapi().get("paths", {}))


def dashboard_router() -> APIRouter:
    router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])

    @router.get(
        "/config",
        summary="What the dashboard needs to start: KPIs, lines, features",
        responses={200: {"model": DashboardConfig}},
    )
    async def config(request: Request, principal: Viewer, ctx: Ctx) -> Response:
        runtime: Runtime = request.app.state.runtime
        paths = _route_paths(request.app)
        return json_response(
            {
                "role": principal.role.value,
                "subject": principal.subject,
                "team_ids": sorted(principal.team_ids),
                # A specialist's dashboard is their own page: /v1/specialists/{this}/...
                "specialist_id": principal.specialist_id,
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
                    "appraisal_cycle": "/v1/appraisals/{quarter}/cycle" in paths,
                },
            }
        )

    @router.get(
        "/overview",
        summary="Every visible specialist's KPIs, per-team and total pooled",
        responses={200: {"model": Overview}},
    )
    async def overview(
        principal: Reader,
        ctx: Ctx,
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
        team: TeamFilter = None,
    ) -> Response:
        win = ctx.window(window, as_of)
        # Unlike the listings, an unknown team is a 404 for supervisors too.
        team_ids = await known_teams(principal, ctx.db, team)
        teams = await queries.list_teams(ctx.db, team_ids)
        members = await queries.overview_sums(ctx.db, win.start, win.end, team_ids)
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

    return router


class _StaticFiles(StaticFiles):
    """Static assets revalidated on every load (ETag), so a new release is never stale."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Add the dashboard routes, its notify and ingest proxies, the static UI under /ui and
    the / redirect."""
    app.include_router(dashboard_router())
    app.include_router(notify_proxy_router())
    app.include_router(ingest_proxy_router())

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(UI_PREFIX + "/")

    app.mount(UI_PREFIX, _StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")
