"""Directory routes: teams and specialists, listed within the caller's scope, written by admins."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query, Request

from services.scoring import directory_writes, queries
from services.scoring.api.deps import Admin, Ctx, Reader, Viewer
from services.scoring.api.directory_import import (
    COLUMNS,
    MAX_ROWS,
    ImportRefused,
    parse_specialists_csv,
)
from services.scoring.api.errors import ERRORS, bad_param, or_404
from services.scoring.api.params import NewId, SpecialistId, TeamFilter, TeamId
from services.scoring.api.schemas import (
    ALIAS_NOTICE,
    ImportedRowOut,
    SpecialistDetail,
    SpecialistImport,
    SpecialistIn,
    SpecialistList,
    SpecialistOut,
    TeamIn,
    TeamList,
    TeamOut,
)
from services.scoring.api.scope import (
    check_team_visible,
    listing_teams,
    visible_specialist,
    visible_teams,
)

logger = logging.getLogger(__name__)

# A file with an error on every row still gets a readable answer.
IMPORT_ERRORS_SHOWN = 200
_CSV_TYPES = ("text/csv", "text/plain")
_IMPORT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "text/csv": {
            "schema": {"type": "string"},
            "example": "id,name,team_id,aliases.zendesk,aliases.email\n"
            "li.na,Li Na 李娜,north,3612,li.na@example.com\n",
        }
    },
}


def team_out(team: queries.TeamRow) -> TeamOut:
    return TeamOut(id=team.id, name=team.name, supervisor=team.supervisor)


def specialist_out(s: queries.SpecialistRow) -> SpecialistOut:
    return SpecialistOut(id=s.id, name=s.name, team_id=s.team_id)


def specialist_detail(s: queries.SpecialistRow, aliases: dict[str, str]) -> SpecialistDetail:
    return SpecialistDetail(id=s.id, name=s.name, team_id=s.team_id, aliases=aliases)


def alias_taken(exc: directory_writes.AliasTaken | None) -> HTTPException:
    """409 naming the alias in the problem's `errors` (like a 422), and who has it."""
    where = ["body", "aliases", exc.kind] if exc else ["body", "aliases"]
    msg = str(exc) if exc else "an alias was just given to another specialist; retry"
    return HTTPException(409, detail=[{"loc": where, "msg": msg, "type": "conflict"}])


def import_refused(refused: ImportRefused) -> HTTPException:
    """422 naming each bad cell by row and column (loc ["body", row, column]); nothing applied."""
    errors = refused.errors
    detail: list[dict[str, Any]] = [
        {
            "loc": ["body", e.row, *([e.column] if e.column else [])],
            "msg": e.text(),
            "type": "value_error",
        }
        for e in errors[:IMPORT_ERRORS_SHOWN]
    ]
    if len(errors) > IMPORT_ERRORS_SHOWN:
        more = len(errors) - IMPORT_ERRORS_SHOWN
        detail.append({"loc": ["body"], "msg": f"and {more} more errors", "type": "value_error"})
    return HTTPException(422, detail=detail)


def _csv_body_type(request: Request) -> None:
    """415 unless the body is declared as CSV (or plain text) in UTF-8."""
    media, _, params = request.headers.get("content-type", "").partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params else "utf-8"
    if media.strip().lower() not in _CSV_TYPES or charset not in ("utf-8", "utf8"):
        raise HTTPException(415, detail="send the file as text/csv in UTF-8")


def directory_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["directory"], responses=ERRORS)

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
            team = await directory_writes.upsert_team(conn, team_id, body.name, body.supervisor)
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
        "/specialists/{specialist_id}",
        response_model=SpecialistDetail,
        response_model_exclude_unset=True,
        summary="One specialist, with its helpdesk aliases",
    )
    async def get_specialist(
        specialist_id: SpecialistId, principal: Viewer, ctx: Ctx
    ) -> SpecialistDetail:
        found = await visible_specialist(principal, ctx.db, specialist_id)
        detail = specialist_detail(found, await queries.aliases_of(ctx.db, specialist_id))
        team = None if found.team_id is None else await queries.get_team(ctx.db, found.team_id)
        detail.team_name = None if team is None else team.name  # set, so always in the answer
        return detail

    @router.put(
        "/specialists/{specialist_id}",
        response_model=SpecialistDetail,
        # Without aliases in the request there is no notice: it is left out, not null.
        response_model_exclude_unset=True,
        summary="Create or replace a specialist's directory entry and helpdesk aliases (admin)",
        responses={409: {"description": "An alias already belongs to another specialist."}},
    )
    async def put_specialist(
        specialist_id: NewId, body: SpecialistIn, principal: Admin, ctx: Ctx
    ) -> SpecialistDetail:
        unknown = bad_param(
            "body", "team_id", f"unknown team {body.team_id!r}; create it with PUT /v1/teams/{{id}}"
        )
        try:
            async with ctx.db.transaction() as conn:
                if body.team_id is not None and await queries.get_team(conn, body.team_id) is None:
                    raise unknown
                specialist = await directory_writes.upsert_specialist(
                    conn, specialist_id, body.name, body.team_id
                )
                if body.aliases is None:
                    aliases = await queries.aliases_of(conn, specialist_id)
                else:
                    wanted = {str(kind): alias for kind, alias in body.aliases.items()}
                    aliases = await directory_writes.replace_aliases(conn, specialist_id, wanted)
        except asyncpg.exceptions.ForeignKeyViolationError:
            raise unknown from None  # the team was deleted between the check and the upsert
        except directory_writes.AliasTaken as exc:
            raise alias_taken(exc) from None
        except asyncpg.exceptions.UniqueViolationError:
            # Another PUT took one of the aliases between the check and the insert.
            raise alias_taken(None) from None
        found = specialist_detail(specialist, aliases)
        if body.aliases is not None:
            found.notice = ALIAS_NOTICE
        return found

    @router.post(
        "/specialists/import",
        response_model=SpecialistImport,
        summary="Create or update specialists from a CSV file (admin)",
        description="Columns `id` (required), `name`, `team_id`, `aliases.<kind>` (kind: "
        "zendesk, freshdesk, zammad, chatwoot, email). An absent column keeps the stored "
        "value, an empty cell clears it. All rows are applied in one transaction or none: "
        "a 422 names every bad cell by row (the header is row 1) and column. Importing the "
        f"same file again changes nothing (`unchanged`). At most {MAX_ROWS} rows.",
        openapi_extra={"requestBody": _IMPORT_BODY},
        responses={
            409: {"description": "An alias was taken by another write meanwhile; retry."},
            415: {"description": "The body is not text/csv (UTF-8)."},
        },
    )
    async def import_specialists(
        request: Request,
        principal: Admin,
        ctx: Ctx,
        dry_run: Annotated[
            bool, Query(description="Check the file and report each row's outcome; write nothing.")
        ] = False,
    ) -> SpecialistImport:
        _csv_body_type(request)
        try:
            plan = parse_specialists_csv(await request.body())
            async with ctx.db.transaction() as conn:
                done, refused = await directory_writes.import_specialists(
                    conn, plan, write=not dry_run
                )
                if refused:
                    raise ImportRefused(refused)
        except ImportRefused as exc:
            raise import_refused(exc) from None
        except asyncpg.exceptions.UniqueViolationError:
            raise alias_taken(None) from None
        except asyncpg.exceptions.ForeignKeyViolationError:
            raise HTTPException(409, detail="a team was deleted during the import; retry") from None
        counts = Counter(r.outcome for r in done)
        if not dry_run:
            logger.info(
                "specialists imported by %s: %d created, %d updated, %d unchanged",
                principal.subject,
                counts["created"],
                counts["updated"],
                counts["unchanged"],
            )
        return SpecialistImport(
            dry_run=dry_run,
            applied=not dry_run,
            columns=[c for c in COLUMNS if plan.states(c)],
            counts={k: counts[k] for k in ("created", "updated", "unchanged")},
            rows=[ImportedRowOut(row=r.row, id=r.id, outcome=r.outcome) for r in done],
            notice=ALIAS_NOTICE if plan.alias_kinds else None,
        )

    return router
