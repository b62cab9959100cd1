"""Pure access rules: which role may do what to which specialist (403 vs the unknown-id 404)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

# Role names as shared.auth.Role spells them (a StrEnum, so Role.ADMIN == "admin"); this
# module stays free of the HTTP layer that defines them.
ADMIN: Final = "admin"
SUPERVISOR: Final = "supervisor"
SPECIALIST: Final = "specialist"


class Action(StrEnum):
    """What a caller does to one specialist's cycle records."""

    READ = "read"  # KPIs, history, facts, directory entry, appraisals, meetings, plans, decisions
    RECORD_MEETING = "record_meeting"  # create and update feedback meetings
    EDIT_PLAN = "edit_plan"  # goals, notes and status of an improvement plan
    ADD_PROGRESS_NOTE = "add_progress_note"  # a timestamped entry in a plan's progress log
    RECORD_DECISION = "record_decision"  # the incentive decision actually taken
    ACKNOWLEDGE = "acknowledge"  # the finalised appraisal, a held meeting's record
    COMMENT = "comment"  # the specialist's own comment on their finalised appraisal


ROLES_FOR: Final[Mapping[Action, frozenset[str]]] = MappingProxyType(
    {
        Action.READ: frozenset({ADMIN, SUPERVISOR, SPECIALIST}),
        Action.RECORD_MEETING: frozenset({ADMIN, SUPERVISOR}),
        Action.EDIT_PLAN: frozenset({ADMIN, SUPERVISOR}),
        Action.ADD_PROGRESS_NOTE: frozenset({ADMIN, SUPERVISOR, SPECIALIST}),
        Action.RECORD_DECISION: frozenset({ADMIN, SUPERVISOR}),
        # Only the specialist speaks for themself: nobody acknowledges or comments for them.
        Action.ACKNOWLEDGE: frozenset({SPECIALIST}),
        Action.COMMENT: frozenset({SPECIALIST}),
    }
)


class Relation(StrEnum):
    """How a caller stands to the specialist a request names."""

    SELF = "self"  # a specialist caller naming their own id
    TEAM = "team"  # an admin, or the supervisor of the specialist's team
    OTHER = "other"  # anyone else, and any id that does not exist


class Verdict(StrEnum):
    ALLOW = "allow"
    FORBIDDEN = "forbidden"  # 403: the role may not do this to anyone (tells nothing of ids)
    HIDDEN = "hidden"  # 404, the body of an unknown id: the specialist is not the caller's


def relation(
    role: str,
    subject: str,
    team_ids: Collection[str],
    specialist_id: str,
    team_id: str | None,
) -> Relation:
    """The caller's relation to a specialist (``team_id``: the specialist's team)."""
    if role == SPECIALIST:
        return Relation.SELF if subject == specialist_id else Relation.OTHER
    if role == ADMIN or (role == SUPERVISOR and team_id is not None and team_id in team_ids):
        return Relation.TEAM
    return Relation.OTHER


def verdict(action: Action, role: str, rel: Relation) -> Verdict:
    """403 depends on the role alone, so it is given before any id is looked at; among the
    roles that may act, anyone but the specialist themself or their team's people sees 404."""
    if role not in ROLES_FOR[action]:
        return Verdict.FORBIDDEN
    wanted = Relation.SELF if role == SPECIALIST else Relation.TEAM
    return Verdict.ALLOW if rel is wanted else Verdict.HIDDEN
