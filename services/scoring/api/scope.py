"""Team scoping: which specialists and teams a caller may read, and which exist.

A specialist or team outside a supervisor's teams is answered exactly like an unknown id
(the same 404 and body), so a supervisor cannot probe which ids exist in other teams; 403 is
left to a role that may not call the route at all.
"""

from __future__ import annotations

from services.scoring import queries
from services.scoring.api.errors import not_found, or_404
from services.scoring.db import Db
from shared.auth import Principal


def check_specialist_visible(principal: Principal, specialist: queries.SpecialistRow) -> None:
    if not principal.can_see_team(specialist.team_id):
        raise not_found("specialist", specialist.id)


async def visible_specialist(
    principal: Principal, db: Db, specialist_id: str
) -> queries.SpecialistRow:
    """The specialist's directory row; 404 when unknown or not in the caller's teams."""
    specialist = or_404(
        await queries.get_specialist(db, specialist_id), "specialist", specialist_id
    )
    check_specialist_visible(principal, specialist)
    return specialist


def check_team_visible(principal: Principal, team_id: str) -> None:
    if not principal.can_see_team(team_id):
        raise not_found("team", team_id)


async def team_exists(db: Db, team_id: str) -> bool:
    return await queries.get_team(db, team_id) is not None


def visible_teams(principal: Principal, team: str | None) -> list[str] | None:
    """Teams a listing is limited to (None = every team); 404 when ``team`` is not the caller's."""
    if team is not None:
        check_team_visible(principal, team)
        return [team]
    return None if principal.is_admin else sorted(principal.team_ids)


async def listing_teams(principal: Principal, db: Db, team: str | None) -> list[str] | None:
    """``visible_teams``, plus a 404 when an admin names a team that does not exist.

    A supervisor naming one of its own teams gets no 404, only a listing of that team (which
    is empty when the directory does not have it).
    """
    teams = visible_teams(principal, team)
    if team is not None and principal.is_admin and not await team_exists(db, team):
        raise not_found("team", team)
    return teams


async def known_teams(principal: Principal, db: Db, team: str | None) -> list[str] | None:
    """``visible_teams``, plus a 404 for anyone naming a team that does not exist."""
    teams = visible_teams(principal, team)
    if team is not None:
        or_404(await queries.get_team(db, team), "team", team)
    return teams
