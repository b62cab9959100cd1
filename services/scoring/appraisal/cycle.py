"""Pure appraisal-cycle rules: meeting states, acknowledgements, decisions, the team view."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

from services.scoring.appraisal.domain import ACTION_LABELS, IncentivePolicy


class FieldError(ValueError):
    """A value the cycle refuses (422), naming the body field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CycleConflict(ValueError):
    """A step the cycle does not allow in the current state (409)."""


# ---------------------------------------------------------------------------
# Feedback meetings
# ---------------------------------------------------------------------------

SCHEDULED: Final = "scheduled"
HELD: Final = "held"
CANCELLED: Final = "cancelled"
MEETING_STATUSES: Final = (SCHEDULED, HELD, CANCELLED)
# A meeting starts scheduled (or is recorded once held); a held record stays held (its notes
# and actions may be corrected); a cancelled one may be scheduled again.
CREATE_STATUSES: Final = frozenset({SCHEDULED, HELD})
MEETING_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        SCHEDULED: frozenset({SCHEDULED, HELD, CANCELLED}),
        HELD: frozenset({HELD}),
        CANCELLED: frozenset({CANCELLED, SCHEDULED}),
    }
)
MAX_AGREED_ACTIONS: Final = 50


@dataclass(frozen=True)
class MeetingRecord:
    """The fields of a feedback meeting people set (who and when are recorded beside)."""

    status: str
    quarter: str | None
    scheduled_for: dt.datetime | None
    held_on: dt.date | None
    participants: tuple[str, ...]
    notes: str
    agreed_actions: tuple[str, ...]

    def day(self, tz: dt.tzinfo) -> dt.date | None:
        """The meeting's date: when it was held, else the local day it is scheduled for."""
        if self.held_on is not None:
            return self.held_on
        if self.scheduled_for is not None:
            return self.scheduled_for.astimezone(tz).date()
        return None


def check_meeting(m: MeetingRecord) -> None:
    """FieldError naming the field when a meeting's fields do not fit its status."""
    if m.status not in MEETING_STATUSES:
        raise FieldError("status", f"must be one of {', '.join(MEETING_STATUSES)}")
    if m.status == HELD and m.held_on is None:
        raise FieldError("held_on", "a held meeting needs held_on (the date it was held)")
    if m.status != HELD and m.held_on is not None:
        raise FieldError("held_on", f"only a held meeting has held_on (status is {m.status!r})")
    if m.status == SCHEDULED and m.scheduled_for is None:
        raise FieldError("scheduled_for", "a scheduled meeting needs scheduled_for")
    if m.scheduled_for is not None and m.scheduled_for.utcoffset() is None:
        raise FieldError("scheduled_for", "must have a UTC offset")
    if m.status != HELD and m.agreed_actions:
        raise FieldError("agreed_actions", "only a held meeting has agreed actions")
    if not m.participants:
        raise FieldError("participants", "at least one participant")
    if len(m.agreed_actions) > MAX_AGREED_ACTIONS:
        raise FieldError("agreed_actions", f"at most {MAX_AGREED_ACTIONS} actions")
    for i, action in enumerate(m.agreed_actions):
        if not action.strip():
            raise FieldError(f"agreed_actions[{i}]", "must not be blank")


def check_meeting_change(old: MeetingRecord | None, new: MeetingRecord) -> None:
    """A new meeting (``old`` None) or an update: FieldError (422) or CycleConflict (409)."""
    if old is None:
        if new.status not in CREATE_STATUSES:
            raise FieldError("status", "a new meeting is scheduled or held")
    elif new.status not in MEETING_TRANSITIONS.get(old.status, frozenset()):
        allowed = ", ".join(sorted(MEETING_TRANSITIONS.get(old.status, frozenset())))
        raise CycleConflict(
            f"a meeting cannot go from {old.status!r} to {new.status!r} (allowed: {allowed})"
        )
    check_meeting(new)


def patched(old: MeetingRecord, changes: Mapping[str, Any]) -> MeetingRecord:
    """``old`` with the given fields replaced (PATCH); nothing is filled in for the caller, so
    a meeting moved to held without held_on is refused, not dated by guess."""
    fields = dict(changes)
    if "participants" in fields:
        fields["participants"] = tuple(fields["participants"])
    if "agreed_actions" in fields:
        fields["agreed_actions"] = tuple(fields["agreed_actions"])
    return replace(old, **fields)


def acknowledgement_stands(old: MeetingRecord, new: MeetingRecord) -> bool:
    """A specialist acknowledged a held record as it was: a change to what it says (date,
    participants, notes, agreed actions) withdraws the acknowledgement."""
    return (old.status, old.held_on, old.participants, old.notes, old.agreed_actions) == (
        new.status,
        new.held_on,
        new.participants,
        new.notes,
        new.agreed_actions,
    )


def check_meeting_acknowledgeable(status: str) -> None:
    if status != HELD:
        raise CycleConflict(f"only a held meeting's record is acknowledged (this one is {status})")


# Which meeting stands for a quarter's appraisal in the team view: a held one over a
# scheduled one over a cancelled one; among equals the latest recorded.
_MEETING_RANK: Final = {HELD: 3, SCHEDULED: 2, CANCELLED: 1}
NO_MEETING: Final = "none"


def quarter_meeting(meetings: Iterable[tuple[int, str]]) -> tuple[int, str] | None:
    """The (id, status) that stands for a quarter among its meetings, None without any."""
    best: tuple[int, str] | None = None
    for mid, status in meetings:
        if best is None or (_MEETING_RANK.get(status, 0), mid) > (
            _MEETING_RANK.get(best[1], 0),
            best[0],
        ):
            best = (mid, status)
    return best


# ---------------------------------------------------------------------------
# The appraisal: provisional, acknowledgement, decisions
# ---------------------------------------------------------------------------

NO_ACTION: Final = "none"
NO_ACTION_LABELS: Final = MappingProxyType({"en": "no action", "zh-CN": "不采取措施"})
MAX_AMOUNT: Final = 1e12


def is_provisional(finalized: bool, today: dt.date, quarter_end: dt.date) -> bool:
    """A quarter still running and not finalised: its grades may still move."""
    return not finalized and today <= quarter_end


def check_finalized(finalized: bool, what: str) -> None:
    if not finalized:
        raise CycleConflict(f"{what} only once the quarter is finalised for this specialist")


def decision_types(policy: IncentivePolicy) -> tuple[str, ...]:
    """What a decision may record: an incentive action code, or "none"."""
    return (*sorted(policy.action_codes()), NO_ACTION)


def check_decision(kind: str, amount: float | None, policy: IncentivePolicy) -> None:
    allowed = decision_types(policy)
    if kind not in allowed:
        raise FieldError("type", f"must be one of {', '.join(allowed)}; got {kind!r}")
    if amount is not None and (not math.isfinite(amount) or abs(amount) > MAX_AMOUNT):
        raise FieldError("amount", f"must be a finite number within ±{MAX_AMOUNT:.0e}")


def action_labels(kind: str) -> dict[str, str]:
    if kind == NO_ACTION:
        return dict(NO_ACTION_LABELS)
    labels = ACTION_LABELS.get(kind, {})
    return {lang: labels.get(lang, kind) for lang in ("en", "zh-CN")}


# ---------------------------------------------------------------------------
# Finalisation preview and the team's cycle view
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalizePlan:
    """What a finalisation would do: freeze ``freeze``, skip ``already``, draft ``plans``."""

    freeze: tuple[str, ...]
    already: tuple[str, ...]
    plans: tuple[str, ...]


def finalize_plan(appraised: Sequence[Mapping[str, Any]], planned: Collection[str]) -> FinalizePlan:
    """Freeze every appraisal not finalised yet; draft a plan for each newly frozen
    unqualified one that has no plan for the next quarter (``planned``) already."""
    fresh = [a for a in appraised if not a["finalized"]]
    return FinalizePlan(
        tuple(sorted(a["specialist_id"] for a in fresh)),
        tuple(sorted(a["specialist_id"] for a in appraised if a["finalized"])),
        tuple(
            sorted(
                a["specialist_id"]
                for a in fresh
                if a["overall_grade"] == "unqualified" and a["specialist_id"] not in planned
            )
        ),
    )


CYCLE_STEPS: Final = ("finalized", "meeting_held", "decision", "acknowledged")


def missing_steps(row: Mapping[str, Any]) -> list[str]:
    """The steps of one specialist's cycle not done yet, in cycle order."""
    done = {
        "finalized": bool(row.get("finalized")),
        "meeting_held": row.get("meeting_status") == HELD,
        "decision": row.get("decision") is not None,
        "acknowledged": row.get("acknowledged_at") is not None,
    }
    return [step for step in CYCLE_STEPS if not done[step]]


def decision_out(decision: Mapping[str, Any]) -> dict[str, Any]:
    """A stored decision with its type's labels (en, zh-CN)."""
    return {**decision, "labels": action_labels(str(decision["type"]))}


def cycle_fields(
    provisional: bool,
    meetings: Iterable[tuple[int, str, dt.date]],
    decision: Mapping[str, Any] | None,
    acknowledged_at: dt.datetime | None,
    comment: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The cycle's part of an appraisal body: meeting status, decision, the specialist's side."""
    chosen = quarter_meeting((mid, status) for mid, status, _ in meetings)
    return {
        "provisional": provisional,
        "meeting_status": NO_MEETING if chosen is None else chosen[1],
        "decision": None if decision is None else decision_out(decision),
        "acknowledged_at": acknowledged_at,
        "comment": None if comment is None else dict(comment),
    }


def cycle_entry(
    appraisal: Mapping[str, Any],
    meetings: Iterable[tuple[int, str, dt.date]],
    plan_quarter: str,
    plan_status: str | None,
) -> dict[str, Any]:
    """One specialist's line of the team's cycle view, from their appraisal body (with the
    cycle fields), the quarter's meetings and the status of their next-quarter plan."""
    listed = list(meetings)
    chosen = quarter_meeting((mid, status) for mid, status, _ in listed)
    dates = {mid: day for mid, _, day in listed}
    entry = {
        "specialist_id": appraisal["specialist_id"],
        "name": appraisal.get("name"),
        "team_id": appraisal.get("team_id"),
        "overall_grade": appraisal["overall_grade"],
        "finalized": appraisal["finalized"],
        "finalized_at": appraisal.get("finalized_at"),
        "provisional": appraisal["provisional"],
        "suggested": list((appraisal.get("incentive") or {}).get("actions") or []),
        "meeting_status": NO_MEETING if chosen is None else chosen[1],
        "meeting_id": None if chosen is None else chosen[0],
        "meeting_date": None if chosen is None else dates[chosen[0]],
        "plan_quarter": plan_quarter,
        "plan_status": plan_status,
        "decision": appraisal.get("decision"),
        "acknowledged_at": appraisal.get("acknowledged_at"),
        "commented": appraisal.get("comment") is not None,
    }
    entry["missing"] = missing_steps(entry)
    return entry


def cycle_summary(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts of the team's cycle, and who still has no held meeting or no decision."""
    return {
        "summary": {
            "specialists": len(entries),
            "finalized": sum(1 for e in entries if e["finalized"]),
            "meetings_held": sum(1 for e in entries if e["meeting_status"] == HELD),
            "decisions": sum(1 for e in entries if e["decision"] is not None),
            "acknowledged": sum(1 for e in entries if e["acknowledged_at"] is not None),
        },
        "missing_meeting": [e["specialist_id"] for e in entries if e["meeting_status"] != HELD],
        "missing_decision": [e["specialist_id"] for e in entries if e["decision"] is None],
    }
