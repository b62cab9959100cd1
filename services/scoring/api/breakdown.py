"""KPIs by ticket channel (?by=channel) and the time distributions routes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query, Response

from services.scoring import breakdown_queries, queries
from services.scoring.api.deps import Ctx, ReadContext, Reader, Viewer
from services.scoring.api.errors import ERRORS, bad_param, or_404
from services.scoring.api.params import DEFAULT_WINDOW, AsOfParam, SpecialistId, TeamId, WindowParam
from services.scoring.api.render import json_response
from services.scoring.api.schemas import SpecialistDistribution, TeamDistribution
from services.scoring.api.scope import check_team_visible, visible_specialist
from services.scoring.kpi.breakdown import BROKEN_DOWN_METRICS
from services.scoring.kpi.grading import evaluate
from services.scoring.kpi.histogram import (
    DISTRIBUTED,
    DISTRIBUTED_METRICS,
    FACTOR,
    METHOD,
    RELATIVE_ERROR,
    distribution,
)
from services.scoring.kpi.lines import DEFAULT_LINES
from services.scoring.kpi.windows import Window
from services.scoring.queries import Sums

# A response lists this many channels (most samples first) and pools the rest: a source
# sending endless distinct channels cannot make a KPI answer grow without bound.
MAX_CHANNELS_LISTED: Final = 50

ByParam = Annotated[
    Literal["channel"] | None,
    Query(description="channel: add by_channel, the ticket-borne KPIs per ticket channel."),
]
DistributedKpi = Annotated[
    str,
    Path(
        max_length=40,
        description=f"One of {', '.join(DISTRIBUTED_METRICS)} (the time measures).",
    ),
]


def _cells(sums: Sums, win: Window, ctx: ReadContext) -> dict[str, dict[str, Any]]:
    # Keys the catalogue does not know yet (a measure of a later release) are skipped.
    return {
        key: evaluate(key, *sums.get(key, (0.0, 0)), ctx.lines.get(key, line), win).to_dict()
        for key in BROKEN_DOWN_METRICS
        if (line := DEFAULT_LINES.get(key)) is not None
    }


def _samples(sums: Sums) -> int:
    return sum(den for _, den in sums.values())


def channel_fields(by_channel: Mapping[str, Sums], win: Window, ctx: ReadContext) -> dict[str, Any]:
    """``by_channel`` and ``other_channels`` of a KPI response (busiest channels first)."""
    order = sorted(by_channel, key=lambda ch: (-_samples(by_channel[ch]), ch))
    listed, rest = order[:MAX_CHANNELS_LISTED], order[MAX_CHANNELS_LISTED:]
    other: dict[str, Any] | None = None
    if rest:
        pooled: dict[str, tuple[float, int]] = {}
        for channel in rest:
            for metric, (num, den) in by_channel[channel].items():
                old = pooled.get(metric, (0.0, 0))
                pooled[metric] = (old[0] + num, old[1] + den)
        other = {"channels": len(rest), "kpis": _cells(pooled, win, ctx)}
    return {
        "by_channel": {ch: _cells(by_channel[ch], win, ctx) for ch in listed},
        "other_channels": other,
    }


async def by_channel(
    ctx: ReadContext, specialist_ids: Collection[str], win: Window
) -> dict[str, Any]:
    """The ``?by=channel`` fields for the pooled KPIs of ``specialist_ids``."""
    sums = await breakdown_queries.channel_sums(ctx.db, specialist_ids, win.start, win.end)
    return channel_fields(sums, win, ctx)


def _check_kpi(kpi: str) -> str:
    if kpi not in DISTRIBUTED:
        raise bad_param(
            "path", "kpi", f"distributions exist for {', '.join(DISTRIBUTED_METRICS)} only"
        )
    return kpi


async def _distribution(
    ctx: ReadContext, specialist_ids: Collection[str], kpi: str, win: Window
) -> dict[str, Any]:
    found = await breakdown_queries.bucket_counts(ctx.db, specialist_ids, kpi, win.start, win.end)
    dist = distribution(found.counts, found.num, found.den)
    return {
        "kpi": kpi,
        "window": ctx.window_out(win),
        "count": dist.count,
        "mean": dist.mean,
        "p50": dist.percentiles[0.5],
        "p90": dist.percentiles[0.9],
        "p99": dist.percentiles[0.99],
        "histogram": [{"lower": lo, "upper": hi, "count": n} for lo, hi, n in dist.buckets],
        "method": METHOD,
        "relative_error": RELATIVE_ERROR,
        "bucket_factor": FACTOR,
    }


def breakdown_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["kpis"], responses=ERRORS)

    @router.get(
        "/specialists/{specialist_id}/kpis/{kpi}/distribution",
        response_model=SpecialistDistribution,
        summary="Distribution of a time measure: percentiles and histogram",
    )
    async def specialist_distribution(
        specialist_id: SpecialistId,
        kpi: DistributedKpi,
        principal: Viewer,
        ctx: Ctx,
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
    ) -> Response:
        key = _check_kpi(kpi)
        win = ctx.window(window, as_of)
        specialist = await visible_specialist(principal, ctx.db, specialist_id)
        body = await _distribution(ctx, [specialist.id], key, win)
        return json_response({"specialist_id": specialist.id, **body})

    @router.get(
        "/teams/{team_id}/kpis/{kpi}/distribution",
        response_model=TeamDistribution,
        summary="Distribution of a time measure over a team's members",
    )
    async def team_distribution(
        team_id: TeamId,
        kpi: DistributedKpi,
        principal: Reader,
        ctx: Ctx,
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
    ) -> Response:
        key = _check_kpi(kpi)
        win = ctx.window(window, as_of)
        check_team_visible(principal, team_id)
        team = or_404(await queries.get_team(ctx.db, team_id), "team", team_id)
        members = await queries.list_specialists(ctx.db, [team.id])
        body = await _distribution(ctx, [m.id for m in members], key, win)
        return json_response({"team_id": team.id, **body})

    return router
