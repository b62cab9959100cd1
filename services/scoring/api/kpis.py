"""KPI read routes: a specialist's and a team's KPIs, the leaderboard, history and facts."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.scoring import queries
from services.scoring.api.breakdown import ByParam, by_channel
from services.scoring.api.deps import Ctx, Reader, Viewer
from services.scoring.api.errors import ERRORS, bad_param, or_404
from services.scoring.api.history import FromParam, ToParam, history_range, points_out
from services.scoring.api.params import (
    DEFAULT_WINDOW,
    AsOfParam,
    SpecialistId,
    TeamId,
    WindowParam,
)
from services.scoring.api.render import json_response, kpi_cell, kpis_out, pooled
from services.scoring.api.schemas import (
    FactsPage,
    History,
    KpiKey,
    Leaderboard,
    LookupId,
    SpecialistKpis,
    TeamHistory,
    TeamKpis,
)
from services.scoring.api.scope import (
    check_own_id,
    check_specialist_visible,
    check_team_visible,
    listing_teams,
    visible_specialist,
)
from services.scoring.kpi.grading import KpiValue, evaluate, evaluate_all
from services.scoring.kpi.series import daily_points, lookback_start
from shared.catalogue import CATALOGUE
from shared.text import text_problem


def encode_cursor(day: dt.date, source: str) -> str:
    raw = json.dumps([day.isoformat(), source], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.date, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        day, source = json.loads(raw)
        if not isinstance(source, str) or not isinstance(day, str):
            raise ValueError("cursor fields have the wrong types")
        if text_problem(source) is not None:
            raise ValueError("cursor source is not storable text")  # PostgreSQL would refuse it
        return dt.date.fromisoformat(day), source
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise bad_param(
            "query", "cursor", "cursor is not one returned by this route (next_cursor)"
        ) from None


def sort_key(kpi: str, value: KpiValue) -> tuple[int, float]:
    """Best first in the catalogue's direction (lower first for response and resolution
    time and reopen rate, higher first otherwise); nulls last."""
    if value.value is None:
        return (1, 0.0)
    v = float(value.value)
    return (0, -v if CATALOGUE[kpi].higher_is_better else v)


def kpi_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["kpis"], responses=ERRORS)

    @router.get(
        "/specialists/{specialist_id}/kpis",
        response_model=SpecialistKpis,
        summary="A specialist's KPIs over a window",
    )
    async def specialist_kpis(
        specialist_id: SpecialistId,
        principal: Viewer,
        ctx: Ctx,
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
        by: ByParam = None,
    ) -> Response:
        win = ctx.window(window, as_of)
        check_own_id(principal, specialist_id)
        found = or_404(
            await queries.specialist_sums(ctx.db, specialist_id, win.start, win.end),
            "specialist",
            specialist_id,
        )
        check_specialist_visible(principal, found.specialist)
        body: dict[str, Any] = {
            "specialist_id": found.specialist.id,
            "name": found.specialist.name,
            "team_id": found.specialist.team_id,
            "window": ctx.window_out(win),
            "kpis": kpis_out(evaluate_all(found.sums, win, ctx.lines)),
        }
        if by == "channel":
            body.update(await by_channel(ctx, [found.specialist.id], win))
        return json_response(body)

    @router.get(
        "/teams/{team_id}/kpis",
        response_model=TeamKpis,
        summary="A team's pooled KPIs and each member's",
    )
    async def team_kpis(
        team_id: TeamId,
        principal: Reader,
        ctx: Ctx,
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
        by: ByParam = None,
    ) -> Response:
        win = ctx.window(window, as_of)
        check_team_visible(principal, team_id)
        team, members = or_404(
            await queries.team_sums(ctx.db, team_id, win.start, win.end), "team", team_id
        )
        body: dict[str, Any] = {
            "team_id": team.id,
            "name": team.name,
            "window": ctx.window_out(win),
            "kpis": kpis_out(evaluate_all(pooled(members), win, ctx.lines)),
            "members": [
                {
                    "specialist_id": m.specialist.id,
                    "name": m.specialist.name,
                    "kpis": kpis_out(evaluate_all(m.sums, win, ctx.lines)),
                }
                for m in members
            ],
        }
        if by == "channel":
            # Pooled over the members, as the team's own KPIs are.
            body.update(await by_channel(ctx, [m.specialist.id for m in members], win))
        return json_response(body)

    @router.get(
        "/leaderboard",
        response_model=Leaderboard,
        summary="Specialists ranked by one KPI, best first",
    )
    async def leaderboard(
        principal: Reader,
        ctx: Ctx,
        kpi: Annotated[KpiKey, Query(description="KPI key to rank by.")],
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
        team: Annotated[
            LookupId | None, Query(description="Only this team (default: all visible).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Response:
        win = ctx.window(window, as_of)
        teams = await listing_teams(principal, ctx.db, team)
        key = kpi.value
        line = ctx.lines[key]
        rows = await queries.metric_sums(ctx.db, key, win.start, win.end, teams)
        scored = [(row, evaluate(key, row.num, row.den, line, win)) for row in rows]
        scored.sort(key=lambda item: (*sort_key(key, item[1]), item[0].specialist.id))
        entries: list[dict[str, Any]] = []
        rank = 0
        previous: tuple[int, float] | None = None
        for position, (row, value) in enumerate(scored[:limit], start=1):
            current = sort_key(key, value)
            # Competition ranking: equal values share a rank, the next one skips ahead.
            if current != previous:
                rank, previous = position, current
            entries.append(
                {
                    "rank": rank,
                    "specialist_id": row.specialist.id,
                    "name": row.specialist.name,
                    "team_id": row.specialist.team_id,
                    **kpi_cell(value),
                }
            )
        return json_response({"kpi": key, "window": ctx.window_out(win), "entries": entries})

    @router.get(
        "/specialists/{specialist_id}/kpis/{kpi}/history",
        response_model=History,
        summary="Daily series of one KPI (one point per local date)",
    )
    async def history(
        specialist_id: SpecialistId,
        kpi: KpiKey,
        principal: Viewer,
        ctx: Ctx,
        from_: FromParam = None,
        to: ToParam = None,
    ) -> Response:
        start, span = history_range(from_, to, ctx.today)
        key = kpi.value
        check_own_id(principal, specialist_id)
        specialist, buckets = or_404(
            await queries.daily_series(
                ctx.db, specialist_id, key, lookback_start(start), start + dt.timedelta(span - 1)
            ),
            "specialist",
            specialist_id,
        )
        check_specialist_visible(principal, specialist)
        points = daily_points(key, buckets, start, span, ctx.lines[key])
        return json_response(
            {
                "specialist_id": specialist.id,
                "kpi": key,
                "from": start,
                "to": points[-1].day,
                "points": points_out(points),
            }
        )

    @router.get(
        "/teams/{team_id}/kpis/{kpi}/history",
        response_model=TeamHistory,
        summary="Daily series of one KPI pooled over the team's current members",
    )
    async def team_history(
        team_id: TeamId,
        kpi: KpiKey,
        principal: Reader,
        ctx: Ctx,
        from_: FromParam = None,
        to: ToParam = None,
    ) -> Response:
        start, span = history_range(from_, to, ctx.today)
        key = kpi.value
        check_team_visible(principal, team_id)
        team, buckets = or_404(
            await queries.team_daily_series(
                ctx.db, team_id, key, lookback_start(start), start + dt.timedelta(span - 1)
            ),
            "team",
            team_id,
        )
        points = daily_points(key, buckets, start, span, ctx.lines[key])
        return json_response(
            {
                "team_id": team.id,
                "name": team.name,
                "kpi": key,
                "from": start,
                "to": points[-1].day,
                "points": points_out(points),
            }
        )

    @router.get(
        "/specialists/{specialist_id}/kpis/{kpi}/events",
        response_model=FactsPage,
        summary="The facts (tickets, sessions, events) behind a KPI value, paged",
    )
    async def kpi_events(
        specialist_id: SpecialistId,
        kpi: KpiKey,
        principal: Viewer,
        ctx: Ctx,
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[
            str | None, Query(max_length=1000, description="next_cursor of the previous page.")
        ] = None,
    ) -> Response:
        win = ctx.window(window, as_of)
        after = decode_cursor(cursor) if cursor is not None else None
        await visible_specialist(principal, ctx.db, specialist_id)
        # One extra row tells whether another page exists without a count query.
        rows = await queries.facts_page(
            ctx.db, specialist_id, kpi.value, win.start, win.end, after, limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return json_response(
            {
                "items": [
                    {"day": r.day, "source": r.source, "num": r.num, "den": r.den} for r in rows
                ],
                "next_cursor": encode_cursor(rows[-1].day, rows[-1].source) if more else None,
                "kept_from": await queries.ledger_kept_from(ctx.db),
            }
        )

    return router
