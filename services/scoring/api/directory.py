"""Directory routes: teams and specialists, listed within the caller's scope, written by admins."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, HTTPException

from services.scoring import directory_writes, queries
from services.scoring.api.deps import Admin, Ctx, Reader, Viewer
from services.scoring.api.errors import ERRORS, bad_param, or_404
from services.scoring.api.params import NewId, SpecialistId, TeamFilter, TeamId
from services.scoring.api.schemas import (
    ALIAS_NOTICE,
    SpecialistDetail,
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


def team_out(team: queries.TeamRow) -> TeamOut:
    return TeamOut(id=team.id, name=team.name, supervisor=team.supervisor)


def specialist_out(s: queries.SpecialistRow) -> SpecialistOut:
    return SpecialistOut(id=s.id, name=s.name, team_id=s.team_id)


def specialist_detail(s: queries.SpecialistRow, aliases: dict[str, str]) -> SpecialistDetail:
    return SpecialistDetail(id=s.id, name=s.name, team_id=s.team_id, aliases=aliases)


def alias_taken(exc: directory_writes.AliasTaken | None) -> HTTPException:
    """409 in the validation-error shape, naming the alias and who has it."""
    where = ["body", "aliases", exc.kind] if exc else ["body", "aliases"]
    msg = str(exc) if exc else "an alias was just given to another specialist; retry"
    return HTTPException(409, detail=[{"loc": where, "msg": msg, "type": "conflict"}])


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
        return specialist_detail(found, await queries.aliases_of(ctx.db, specialist_id))

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

    return router
