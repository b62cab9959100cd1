"""Per-ticket export route: one row per ticket of a team over a date range, CSV or XLSX."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from services.scoring import ticket_export
from services.scoring.api.deps import Ctx, Reader, scoring_config
from services.scoring.api.errors import ERRORS, bad_param
from services.scoring.api.schemas import LookupId
from services.scoring.api.scope import listing_teams, visible_specialist
from services.scoring.config import ScoringConfig
from services.scoring.ticket_export import DEFAULT_RANGE_DAYS, MAX_RANGE_DAYS, TicketFilter
from shared.spreadsheet import attachment

CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Config = Annotated[ScoringConfig, Depends(scoring_config)]


class ClosingStreamingResponse(StreamingResponse):
    """A streamed response that closes its body iterator however the response ends.

    Starlette stops iterating when the client goes away but leaves the generator suspended
    until garbage collection: here that generator holds a database connection inside a
    transaction (the cursor), which must end with the response.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def pick_lang(lang: str | None, accept_language: str | None) -> str:
    """``lang`` when given, else the first of zh/en that Accept-Language prefers; zh-CN."""
    if lang is not None:
        return lang
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in ("zh", "en") and q > 0:
            ranked.append((-q, i, "zh-CN" if base == "zh" else "en"))
    return min(ranked)[2] if ranked else "zh-CN"


def date_range(
    start: dt.date | None, end: dt.date | None, today: dt.date
) -> tuple[dt.date, dt.date]:
    """[from, to] with defaults (the last 30 days to today); 422 naming the field otherwise."""
    end = end or today
    try:
        start = start or end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
    except OverflowError:
        raise bad_param("query", "to", f"to ({end}) leaves no room for a default from") from None
    if start > end:
        raise bad_param("query", "from", f"from ({start}) must not be after to ({end})")
    span = (end - start).days + 1
    if span > MAX_RANGE_DAYS:
        raise bad_param("query", "from", f"at most {MAX_RANGE_DAYS} days per export, got {span}")
    return start, end


def ticket_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["tickets"], responses=ERRORS)

    @router.get(
        "/tickets",
        summary="One row per ticket opened in a date range (CSV or XLSX, streamed)",
        description="Tickets opened (earliest ticket.created; without one, earliest event) on "
        "a local date in [from, to], whose specialist (the closing specialist of the counted "
        "closure, else the current owner) is a member of `team` now. Supervisors name one of "
        "their teams; admins may omit `team` for every ticket. Specialists: 403.",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The file, streamed.",
                "content": {"text/csv": {"schema": {"type": "string"}}, XLSX: {}},
            }
        },
    )
    async def tickets(
        principal: Reader,
        ctx: Ctx,
        config: Config,
        fmt: Annotated[Literal["csv", "xlsx"], Query(alias="format", description="csv or xlsx")],
        team: Annotated[
            LookupId | None,
            Query(description="Team whose tickets (required for supervisors)."),
        ] = None,
        specialist: Annotated[
            LookupId | None, Query(description="Only this specialist's tickets.")
        ] = None,
        from_: Annotated[
            dt.date | None,
            Query(
                alias="from",
                description=f"First local date; default to - {DEFAULT_RANGE_DAYS - 1} days.",
            ),
        ] = None,
        to: Annotated[
            dt.date | None, Query(description="Last local date; default today in KPI_TIMEZONE.")
        ] = None,
        lang: Annotated[
            Literal["zh-CN", "en"] | None,
            Query(description="Language of the headers; default from Accept-Language, zh-CN."),
        ] = None,
        accept_language: Annotated[str | None, Header()] = None,
    ) -> Response:
        start, end = date_range(from_, to, ctx.today)
        if team is None and not principal.is_admin:
            raise bad_param("query", "team", "a supervisor names one of their teams")
        teams = await listing_teams(principal, ctx.db, team)
        if specialist is not None:
            await visible_specialist(principal, ctx.db, specialist)
        people = await ticket_export.directory(ctx.db, teams)
        members: frozenset[str] | None = None if teams is None else frozenset(people)
        if specialist is not None:
            members = frozenset({specialist} if members is None else members & {specialist})
        keep = TicketFilter(start, end, members)
        measure = config.measure
        lo, hi = keep.bounds(measure.tz)
        export = ticket_export.Export(
            ticket_export.state_batches(ctx.db, lo, hi),
            people,
            keep,
            measure,
            pick_lang(lang, accept_language),
        )
        name = f"tickets-{team or 'all'}-{start.isoformat()}-{end.isoformat()}.{fmt}"
        disposition = {"Content-Disposition": attachment(name)}
        if fmt == "csv":
            return ClosingStreamingResponse(
                ticket_export.csv_stream(export), media_type=CSV, headers=disposition
            )
        out = await ticket_export.xlsx_file(export)
        return ClosingStreamingResponse(
            ticket_export.file_chunks(out), media_type=XLSX, headers=disposition
        )

    return router
