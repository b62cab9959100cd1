"""Scoping: which specialists and teams a caller may read or act on, and which exist.

A specialist or team outside a supervisor's teams, and any specialist other than a
specialist caller's own, is answered exactly like an unknown id (the same 404 and body), so
nobody can probe which ids exist; 403 is left to a role that may not call the route (or do
the action) at all, which depends on the role alone. The rules are in access.py.
"""

from __future__ import annotations

from fastapi import status

from services.scoring import queries
from services.scoring.access import ROLES_FOR, Action, Relation, relation
from services.scoring.api.errors import not_found, or_404
from services.scoring.db import Db
from shared.auth import ROLE_NOT_ALLOWED_CODE, Principal, Role
from shared.http_problems import ProblemError

_DOING = {
    Action.READ: "read a specialist's records",
    Action.RECORD_MEETING: "record feedback meetings",
    Action.EDIT_PLAN: "change an improvement plan's goals or status",
    Action.ADD_PROGRESS_NOTE: "add progress notes",
    Action.RECORD_DECISION: "record incentive decisions",
    Action.ACKNOWLEDGE: "acknowledge for a specialist (only the specialist themself does)",
    Action.COMMENT: "comment for a specialist (only the specialist themself does)",
}


def relation_to(principal: Principal, specialist_id: str, team_id: str | None) -> Relation:
    return relation(principal.role, principal.subject, principal.team_ids, specialist_id, team_id)


def check_action(principal: Principal, action: Action) -> None:
    """403 when the caller's role may not do ``action`` to anyone."""
    if principal.role not in ROLES_FOR[action]:
        raise ProblemError(
            status.HTTP_403_FORBIDDEN,
            f"role '{principal.role}' may not {_DOING[action]}",
            code=ROLE_NOT_ALLOWED_CODE,
        )


def check_own_id(principal: Principal, specialist_id: str) -> None:
    """A specialist caller naming anyone but themself: the unknown-id 404, before any lookup."""
    if principal.role is Role.SPECIALIST and specialist_id != principal.specialist_id:
        raise not_found("specialist", specialist_id)


def check_specialist_visible(principal: Principal, specialist: queries.SpecialistRow) -> None:
    if relation_to(principal, specialist.id, specialist.team_id) is Relation.OTHER:
        raise not_found("specialist", specialist.id)


async def visible_specialist(
    principal: Principal, db: Db, specialist_id: str, action: Action = Action.READ
) -> queries.SpecialistRow:
    """The specialist's directory row when the caller may do ``action`` to them: 403 for a
    role that may not do it at all, else 404 when unknown or not the caller's."""
    check_action(principal, action)
    check_own_id(principal, specialist_id)
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
