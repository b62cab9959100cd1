"""FastAPI application of the scoring service: routes plus lifespan-owned resources."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

from services.scoring import queries
from services.scoring.config import ScoringConfig
from services.scoring.kpi.grading import KpiValue, evaluate, evaluate_all
from services.scoring.kpi.lines import KpiLine
from services.scoring.kpi.windows import Window, WindowError, parse_window
from services.scoring.queries import ReadDb
from services.scoring.schemas import (
    DirectoryId,
    FactsPage,
    History,
    KpiKey,
    Leaderboard,
    LookupId,
    SpecialistIn,
    SpecialistKpis,
    SpecialistList,
    SpecialistOut,
    TeamIn,
    TeamKpis,
    TeamList,
    TeamOut,
)
from shared.auth import Principal, Role, require
from shared.catalogue import AVG_RESPONSE_TIME_HOURS
from shared.db import utcnow
from shared.runtime import Runtime, create_app
from shared.settings import Settings, SettingsError
from shared.text import text_problem

logger = logging.getLogger(__name__)

SERVICE = "scoring"
DEFAULT_WINDOW = "30d"
MAX_HISTORY_DAYS = 400
DEFAULT_HISTORY_DAYS = 30
# Below about a kilobyte the gzip header and the CPU cost more than the bytes saved.
GZIP_MIN_BYTES = 1024
# zlib's default level: the ~0.8 MB dashboard overview compresses in ~9 ms of CPU to ~14 %,
# where Starlette's default level 9 takes ~40 ms for 8 % fewer bytes.
GZIP_LEVEL = 6

Clock = Callable[[], dt.datetime]
T = TypeVar("T")


async def on_start(runtime: Runtime, config: ScoringConfig) -> None:
    """Create this service's clients and background tasks (kept in the runtime)."""
    from services.scoring.engine.wiring import start_engine  # the engine owns its wiring

    await start_engine(runtime, config)


# ---------------------------------------------------------------------------
# Request context and helpers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadContext:
    """What every KPI read needs: the read pool, the organisation's zone and lines, today."""

    db: ReadDb
    tz: ZoneInfo
    lines: Mapping[str, KpiLine]
    today: dt.date

    def window(self, name: str, as_of: dt.date | None) -> Window:
        try:
            return parse_window(name, as_of or self.today)
        except WindowError as exc:
            raise bad_param("query", "window", str(exc)) from None

    def window_out(self, window: Window) -> dict[str, Any]:
        return {
            "name": window.name,
            "from": window.start,
            "to": window.end,
            "timezone": self.tz.key,
        }


def scoring_config(request: Request) -> ScoringConfig:
    """The configuration the lifespan parsed once."""
    config: ScoringConfig = request.app.state.config
    return config


async def read_context(request: Request) -> ReadContext:
    config = scoring_config(request)
    clock: Clock = getattr(request.app.state, "clock", utcnow)
    tz = ZoneInfo(config.timezone)
    return ReadContext(request.app.state.read_db, tz, config.lines, config.measure.today(clock()))


def bad_param(where: str, name: str, msg: str) -> HTTPException:
    """422 in FastAPI's own validation-error shape so clients parse one format."""
    return HTTPException(
        422,
        detail=[{"loc": [where, name], "msg": msg, "type": "value_error"}],
    )


def not_found(what: str, ident: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown {what} {ident!r}")


def forbidden(what: str, ident: str) -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN, detail=f"{what} {ident!r} is not in one of your teams"
    )


def or_404(found: T | None, what: str, ident: str) -> T:
    """``found``, or raise the 404 naming the unknown ``what`` (e.g. "team") and its id."""
    if found is None:
        raise not_found(what, ident)
    return found


async def team_exists(db: ReadDb, team_id: str) -> bool:
    return await queries.get_team(db, team_id) is not None


def json_response(body: Any) -> Response:
    # The hot KPI routes build plain dicts (shapes documented by response_model) and encode
    # them with orjson: re-validating through pydantic doubled their CPU cost per request.
    return Response(orjson.dumps(body), media_type="application/json")


def check_specialist_visible(principal: Principal, specialist: queries.SpecialistRow) -> None:
    if not principal.can_see_team(specialist.team_id):
        raise forbidden("specialist", specialist.id)


async def visible_specialist(
    principal: Principal, db: ReadDb, specialist_id: str
) -> queries.SpecialistRow:
    """The specialist's directory row; 404 when unknown, 403 when not in the caller's teams."""
    specialist = or_404(
        await queries.get_specialist(db, specialist_id), "specialist", specialist_id
    )
    check_specialist_visible(principal, specialist)
    return specialist


def check_team_visible(principal: Principal, team_id: str) -> None:
    # Callers check scope before existence so a supervisor cannot probe which team ids exist.
    if not principal.can_see_team(team_id):
        raise forbidden("team", team_id)


def visible_teams(principal: Principal, team: str | None) -> list[str] | None:
    """Teams a listing is limited to (None = every team); 403 when ``team`` is not the caller's."""
    if team is not None:
        check_team_visible(principal, team)
        return [team]
    return None if principal.is_admin else sorted(principal.team_ids)


async def listing_teams(principal: Principal, db: ReadDb, team: str | None) -> list[str] | None:
    """``visible_teams``, plus a 404 when an admin names a team that does not exist.

    A supervisor naming one of its own teams gets no 404, only a listing of that team (which
    is empty when the directory does not have it).
    """
    teams = visible_teams(principal, team)
    if team is not None and principal.is_admin and not await team_exists(db, team):
        raise not_found("team", team)
    return teams


def kpis_out(values: Mapping[str, KpiValue]) -> dict[str, dict[str, Any]]:
    return {key: v.to_dict() for key, v in values.items()}


def kpi_cell(value: KpiValue) -> dict[str, Any]:
    """A KPI value without its lines (for responses that send the lines once, or not at all)."""
    return {
        "value": value.value,
        "numerator": value.numerator,
        "denominator": value.denominator,
        "grade": value.grade,
    }


def pooled(members: Iterable[queries.SpecialistSums]) -> queries.Sums:
    total: dict[str, tuple[float, int]] = {}
    for member in members:
        for metric, (num, den) in member.sums.items():
            old_num, old_den = total.get(metric, (0.0, 0))
            total[metric] = (old_num + num, old_den + den)
    return total


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
    """Best first: higher values, except response time where lower is better; nulls last."""
    if value.value is None:
        return (1, 0.0)
    v = float(value.value)
    return (0, v if kpi == AVG_RESPONSE_TIME_HOURS else -v)


# ---------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------

Reader = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
Admin = Annotated[Principal, Depends(require())]
Ctx = Annotated[ReadContext, Depends(read_context)]
SpecialistId = Annotated[LookupId, Path(min_length=1)]
TeamId = Annotated[LookupId, Path(min_length=1)]
# PUT creates the row, so its path id must pass the id rule like an event's ids.
NewId = Annotated[DirectoryId, Path()]
TeamFilter = Annotated[LookupId | None, Query(description="Only this team.")]
WindowParam = Annotated[
    str,
    Query(description="Nd (N = 1..400 local dates ending at as_of), qtd, or YYYYQn."),
]
AsOfParam = Annotated[
    dt.date | None, Query(description="Local date (YYYY-MM-DD); default today in KPI_TIMEZONE.")
]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token."},
    403: {"description": "Service token, or a team that is not the supervisor's."},
    404: {"description": "Unknown specialist or team."},
    422: {"description": "Bad parameter; `detail[].loc` names it."},
}


def kpi_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["kpis"], responses=ERRORS)

    @router.get(
        "/specialists/{specialist_id}/kpis",
        response_model=SpecialistKpis,
        summary="A specialist's KPIs over a window",
    )
    async def specialist_kpis(
        specialist_id: SpecialistId,
        principal: Reader,
        ctx: Ctx,
        window: WindowParam = DEFAULT_WINDOW,
        as_of: AsOfParam = None,
    ) -> Response:
        win = ctx.window(window, as_of)
        found = or_404(
            await queries.specialist_sums(ctx.db, specialist_id, win.start, win.end),
            "specialist",
            specialist_id,
        )
        check_specialist_visible(principal, found.specialist)
        return json_response(
            {
                "specialist_id": found.specialist.id,
                "name": found.specialist.name,
                "team_id": found.specialist.team_id,
                "window": ctx.window_out(win),
                "kpis": kpis_out(evaluate_all(found.sums, win, ctx.lines)),
            }
        )

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
    ) -> Response:
        win = ctx.window(window, as_of)
        check_team_visible(principal, team_id)
        team, members = or_404(
            await queries.team_sums(ctx.db, team_id, win.start, win.end), "team", team_id
        )
        return json_response(
            {
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
        )

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
        principal: Reader,
        ctx: Ctx,
        from_: Annotated[
            dt.date | None,
            Query(
                alias="from",
                description=f"First local date; default to - {DEFAULT_HISTORY_DAYS - 1} days.",
            ),
        ] = None,
        to: Annotated[
            dt.date | None, Query(description="Last local date; default today in KPI_TIMEZONE.")
        ] = None,
    ) -> Response:
        end = to or ctx.today
        try:
            start = from_ or end - dt.timedelta(days=DEFAULT_HISTORY_DAYS - 1)
        except OverflowError:
            raise bad_param(
                "query", "to", f"to ({end}) leaves no room for a default from"
            ) from None
        if start > end:
            raise bad_param("query", "from", f"from ({start}) must not be after to ({end})")
        span = (end - start).days + 1
        if span > MAX_HISTORY_DAYS:
            raise bad_param(
                "query", "from", f"at most {MAX_HISTORY_DAYS} days per request, got {span}"
            )
        key = kpi.value
        line = ctx.lines[key]
        specialist, buckets = or_404(
            await queries.daily_series(ctx.db, specialist_id, key, start, end),
            "specialist",
            specialist_id,
        )
        check_specialist_visible(principal, specialist)
        points: list[dict[str, Any]] = []
        for offset in range(span):
            day = start + dt.timedelta(days=offset)
            num, den = buckets.get(day, (0.0, 0))
            value = evaluate(key, num, den, line, Window(day.isoformat(), day, day, "days"))
            points.append(
                {
                    "date": day,
                    "value": value.value,
                    "numerator": value.numerator,
                    "denominator": value.denominator,
                }
            )
        return json_response(
            {
                "specialist_id": specialist.id,
                "kpi": key,
                "from": start,
                "to": end,
                "points": points,
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
        principal: Reader,
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
            }
        )

    return router


def directory_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["directory"], responses=ERRORS)

    def team_out(team: queries.TeamRow) -> TeamOut:
        return TeamOut(id=team.id, name=team.name, supervisor=team.supervisor)

    def specialist_out(s: queries.SpecialistRow) -> SpecialistOut:
        return SpecialistOut(id=s.id, name=s.name, team_id=s.team_id)

    @router.get("/teams", response_model=TeamList, summary="Teams visible to the caller")
    async def get_teams(principal: Reader, ctx: Ctx) -> TeamList:
        rows = await queries.list_teams(ctx.db, visible_teams(principal, None))
        return TeamList(teams=[team_out(t) for t in rows])

    @router.get("/teams/{team_id}", response_model=TeamOut, summary="One team")
    async def get_team(team_id: TeamId, principal: Reader, ctx: Ctx) -> TeamOut:
        check_team_visible(principal, team_id)
        return team_out(or_404(await queries.get_team(ctx.db, team_id), "team", team_id))

    @router.put(
        "/teams/{team_id}", response_model=TeamOut, summary="Create or replace a team (admin)"
    )
    async def put_team(team_id: NewId, body: TeamIn, principal: Admin, ctx: Ctx) -> TeamOut:
        async with ctx.db.transaction() as conn:
            team = await queries.upsert_team(conn, team_id, body.name, body.supervisor)
        return team_out(team)

    @router.get(
        "/specialists", response_model=SpecialistList, summary="Specialists visible to the caller"
    )
    async def get_specialists(
        principal: Reader,
        ctx: Ctx,
        team: TeamFilter = None,
    ) -> SpecialistList:
        rows = await queries.list_specialists(ctx.db, await listing_teams(principal, ctx.db, team))
        return SpecialistList(specialists=[specialist_out(s) for s in rows])

    @router.get(
        "/specialists/{specialist_id}", response_model=SpecialistOut, summary="One specialist"
    )
    async def get_specialist(
        specialist_id: SpecialistId, principal: Reader, ctx: Ctx
    ) -> SpecialistOut:
        return specialist_out(await visible_specialist(principal, ctx.db, specialist_id))

    @router.put(
        "/specialists/{specialist_id}",
        response_model=SpecialistOut,
        summary="Create or replace a specialist's directory entry (admin)",
    )
    async def put_specialist(
        specialist_id: NewId, body: SpecialistIn, principal: Admin, ctx: Ctx
    ) -> SpecialistOut:
        unknown = bad_param(
            "body", "team_id", f"unknown team {body.team_id!r}; create it with PUT /v1/teams/{{id}}"
        )
        try:
            async with ctx.db.transaction() as conn:
                if body.team_id is not None and await queries.get_team(conn, body.team_id) is None:
                    raise unknown
                specialist = await queries.upsert_specialist(
                    conn, specialist_id, body.name, body.team_id
                )
        except asyncpg.exceptions.ForeignKeyViolationError:
            raise unknown from None  # the team was deleted between the check and the upsert
        return specialist_out(specialist)

    return router


def _appraisal_router() -> APIRouter:
    from services.scoring.appraisal_api import appraisal_router  # imports this module's helpers

    return appraisal_router()


def _platform_router() -> APIRouter:
    from services.scoring.platform_api import platform_router  # imports this module's helpers

    return platform_router()


def build_app(settings: Settings | None = None) -> FastAPI:
    async def start(runtime: Runtime) -> None:
        try:
            config = ScoringConfig.from_settings(runtime.settings)
        except SettingsError as exc:
            logger.error("scoring: %s", exc)
            raise
        app.state.config = config
        # The API's read pool lives as long as the runtime; closed after the engine stops.
        read_db = await ReadDb.create(runtime.settings.database_dsn)
        runtime.stoppers.append(read_db.close)
        app.state.read_db = read_db
        await on_start(runtime, config)

    app = create_app(
        SERVICE,
        settings=settings,
        routers=[kpi_router(), directory_router(), _appraisal_router(), _platform_router()],
        on_start=start,
        title="KPI scoring service",
        description="Exactly-once KPI engine and KPI queries.",
    )
    # Injectable clock: "today" for as_of and history defaults; tests replace it.
    app.state.clock = utcnow
    # Only for clients that send Accept-Encoding: gzip. text/event-stream (the alert stream the
    # dashboard proxies from notify) is in GZipMiddleware's default exclusions, so each event
    # goes out unencoded as soon as it is relayed (tests/unit/test_scoring_gzip.py holds this).
    # Appended, i.e. innermost: outside the runtime's metrics middleware (BaseHTTPMiddleware)
    # it would see every body as a stream, gzip even tiny ones and drop Content-Length.
    app.user_middleware.append(
        Middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    )
    from services.scoring.dashboard import install  # imported late: it imports this module

    install(app)
    return app
