"""The appraisal cycle's pure rules against small reference models: who may do what, meeting
states, acknowledgements, decisions, finalisation preview, the team view, defaults."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring import access
from services.scoring.access import Action, Relation, Verdict
from services.scoring.appraisal import cycle, domain

ROLES = ("admin", "supervisor", "specialist", "service")
IDS = st.sampled_from(["s1", "s2", "s3", "ghost"])
TEAMS = st.sampled_from(["north", "south", None])

# -- who may do what ---------------------------------------------------------------------

# The reference, as docs/appraisal.md words it.
PEOPLE_WRITE = {"record_meeting", "edit_plan", "record_decision"}
SPECIALIST_ONLY = {"acknowledge", "comment"}


def reference_verdict(
    action: str, role: str, subject: str, teams: set[str], sid: str, team: str | None
) -> str:
    if role == "service":
        return "forbidden"
    if action in SPECIALIST_ONLY and role != "specialist":
        return "forbidden"
    if action in PEOPLE_WRITE and role == "specialist":
        return "forbidden"
    if role == "specialist":
        return "allow" if subject == sid else "hidden"
    if role == "admin":
        return "allow"
    return "allow" if team is not None and team in teams else "hidden"


@given(
    st.sampled_from(list(Action)),
    st.sampled_from(ROLES),
    IDS,
    st.sets(st.sampled_from(["north", "south", "east"])),
    IDS,
    TEAMS,
)
def test_verdicts_match_the_reference(
    action: Action, role: str, subject: str, teams: set[str], sid: str, team: str | None
) -> None:
    rel = access.relation(role, subject, frozenset(teams), sid, team)
    got = access.verdict(action, role, rel)
    assert got.value == reference_verdict(action.value, role, subject, teams, sid, team)


@given(st.sampled_from(list(Action)), st.sampled_from(ROLES), st.sampled_from(list(Relation)))
def test_forbidden_depends_on_the_role_alone(action: Action, role: str, rel: Relation) -> None:
    """403 never tells whether an id exists or is someone's: the relation cannot change it."""
    forbidden = access.verdict(action, role, rel) is Verdict.FORBIDDEN
    assert forbidden == all(
        access.verdict(action, role, other) is Verdict.FORBIDDEN for other in Relation
    )


def test_the_specialist_speaks_for_themself() -> None:
    for role in ("admin", "supervisor"):
        for action in (Action.ACKNOWLEDGE, Action.COMMENT):
            assert access.verdict(action, role, Relation.TEAM) is Verdict.FORBIDDEN
    assert access.verdict(Action.ACKNOWLEDGE, "specialist", Relation.SELF) is Verdict.ALLOW
    assert access.verdict(Action.ADD_PROGRESS_NOTE, "specialist", Relation.SELF) is Verdict.ALLOW
    assert access.verdict(Action.EDIT_PLAN, "specialist", Relation.SELF) is Verdict.FORBIDDEN
    # A colleague in the same team is as unknown as an id that does not exist.
    colleague = access.relation("specialist", "s1", frozenset(), "s2", "north")
    assert access.verdict(Action.READ, "specialist", colleague) is Verdict.HIDDEN


# -- meetings ----------------------------------------------------------------------------

WHEN = dt.datetime(2026, 10, 9, 2, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 10, 9)
ALLOWED = {
    ("scheduled", "scheduled"),
    ("scheduled", "held"),
    ("scheduled", "cancelled"),
    ("held", "held"),
    ("cancelled", "cancelled"),
    ("cancelled", "scheduled"),
}

records = st.builds(
    cycle.MeetingRecord,
    status=st.sampled_from(["scheduled", "held", "cancelled", "postponed"]),
    quarter=st.sampled_from([None, "2026Q3"]),
    scheduled_for=st.sampled_from([None, WHEN, dt.datetime(2026, 10, 9, 10, 0)]),
    held_on=st.sampled_from([None, DAY]),
    participants=st.sampled_from([(), ("ann",), ("ann", "s1")]),
    notes=st.sampled_from(["", "谈话", "x" * 3]),
    agreed_actions=st.sampled_from([(), ("call back weekly",), (" ",)]),
)


def reference_fields(m: cycle.MeetingRecord) -> str | None:
    """The field a meeting's status makes wrong, None when it is consistent."""
    if m.status not in ("scheduled", "held", "cancelled"):
        return "status"
    if (m.status == "held") != (m.held_on is not None):
        return "held_on"
    if m.status == "scheduled" and m.scheduled_for is None:
        return "scheduled_for"
    if m.scheduled_for is not None and m.scheduled_for.tzinfo is None:
        return "scheduled_for"
    if m.agreed_actions and m.status != "held":
        return "agreed_actions"
    if not m.participants:
        return "participants"
    for i, action in enumerate(m.agreed_actions):
        if not action.strip():
            return f"agreed_actions[{i}]"
    return None


def outcome(old: cycle.MeetingRecord | None, new: cycle.MeetingRecord) -> str:
    try:
        cycle.check_meeting_change(old, new)
    except cycle.FieldError as exc:
        return f"422 {exc.field}"
    except cycle.CycleConflict:
        return "409"
    return "ok"


def reference_outcome(old: cycle.MeetingRecord | None, new: cycle.MeetingRecord) -> str:
    if old is None:
        if new.status not in ("scheduled", "held"):
            return "422 status"
    elif (old.status, new.status) not in ALLOWED:
        return "409"
    wrong = reference_fields(new)
    return "ok" if wrong is None else f"422 {wrong}"


@given(records)
def test_creating_a_meeting_matches_the_reference(new: cycle.MeetingRecord) -> None:
    assert outcome(None, new) == reference_outcome(None, new)


@given(records, records)
def test_changing_a_meeting_matches_the_reference(
    old: cycle.MeetingRecord, new: cycle.MeetingRecord
) -> None:
    assert outcome(old, new) == reference_outcome(old, new)


@given(records)
def test_a_held_record_stays_held(old: cycle.MeetingRecord) -> None:
    held = cycle.patched(old, {"status": "held", "held_on": DAY, "scheduled_for": WHEN})
    for status in ("scheduled", "cancelled"):
        later = cycle.patched(held, {"status": status, "held_on": None, "agreed_actions": ()})
        assert outcome(held, later) == "409"


@given(records, st.dictionaries(st.sampled_from(["notes", "participants", "held_on",
                                                 "agreed_actions", "quarter", "scheduled_for"]),
                                st.sampled_from(["changed", "same"])))  # fmt: skip
def test_an_acknowledgement_stands_only_while_the_record_says_the_same(
    old: cycle.MeetingRecord, what: dict[str, str]
) -> None:
    new_values = {
        "notes": old.notes + "!",
        "participants": (*old.participants, "bob"),
        "held_on": dt.date(2026, 10, 10) if old.held_on != dt.date(2026, 10, 10) else DAY,
        "agreed_actions": (*old.agreed_actions, "more"),
        "quarter": "2026Q2" if old.quarter != "2026Q2" else None,
        "scheduled_for": None if old.scheduled_for else WHEN,
    }
    changes = {k: new_values[k] if v == "changed" else getattr(old, k) for k, v in what.items()}
    new = cycle.patched(old, changes)
    # What the specialist read: date held, who, notes, agreed actions (not the quarter link
    # or when it had been scheduled).
    said = {"notes", "participants", "held_on", "agreed_actions"}
    changed = any(what[k] == "changed" for k in what if k in said)
    assert cycle.acknowledgement_stands(old, new) is not changed


def test_meeting_day_and_acknowledgeable() -> None:
    tz = dt.timezone(dt.timedelta(hours=8))
    late = dt.datetime(2026, 10, 9, 20, 0, tzinfo=dt.UTC)  # 04:00 next day in +08:00
    m = cycle.MeetingRecord("scheduled", "2026Q3", late, None, ("ann",), "", ())
    assert m.day(tz) == dt.date(2026, 10, 10)
    assert cycle.patched(m, {"status": "held", "held_on": DAY}).day(tz) == DAY
    with pytest.raises(cycle.CycleConflict, match="held"):
        cycle.check_meeting_acknowledgeable("scheduled")
    cycle.check_meeting_acknowledgeable("held")


@given(st.lists(st.tuples(st.integers(1, 50), st.sampled_from(cycle.MEETING_STATUSES))))
def test_the_quarter_meeting_is_the_best_latest(meetings: list[tuple[int, str]]) -> None:
    rank = {"held": 3, "scheduled": 2, "cancelled": 1}
    want = max(meetings, key=lambda m: (rank[m[1]], m[0])) if meetings else None
    assert cycle.quarter_meeting(meetings) == want


# -- the appraisal's side ----------------------------------------------------------------


@given(st.booleans(), st.dates(dt.date(2026, 1, 1), dt.date(2027, 1, 1)))
def test_provisional_is_a_running_unfinalised_quarter(finalized: bool, today: dt.date) -> None:
    end = dt.date(2026, 9, 30)
    assert cycle.is_provisional(finalized, today, end) == (not finalized and today <= end)


CODES = st.sampled_from(
    [*domain.ACTION_LABELS, "none", "thank_you_note", "bonus", "Bonus", "", "none "]
)


@given(
    CODES,
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    st.dictionaries(st.sampled_from(domain.OVERALL_GRADES), st.lists(st.sampled_from(
        ["thank_you_note", "recognition", "bonus"]), max_size=2)),
)  # fmt: skip
def test_decisions_take_known_codes_and_finite_amounts(
    kind: str, amount: float | None, overrides: dict[str, list[str]]
) -> None:
    policy = domain.parse_incentives(overrides)
    configured = {a for actions in policy.by_grade.values() for a in actions}
    known = set(domain.ACTION_LABELS) | configured | {"none"}
    try:
        cycle.check_decision(kind, amount, policy)
        got = None
    except cycle.FieldError as exc:
        got = exc.field
    if kind not in known:
        assert got == "type"
    elif amount is not None and not (math.isfinite(amount) and abs(amount) <= 1e12):
        assert got == "amount"
    else:
        assert got is None
    assert set(cycle.decision_types(policy)) == known


def test_decision_labels() -> None:
    assert cycle.action_labels("none") == {"en": "no action", "zh-CN": "不采取措施"}
    assert cycle.action_labels("coaching") == {"en": "coaching", "zh-CN": "辅导"}
    assert cycle.action_labels("bonus") == {"en": "bonus", "zh-CN": "bonus"}
    out = cycle.decision_out({"type": "pay_adjustment_candidate", "amount": 500.0})
    assert out["labels"]["zh-CN"] == "调薪" and out["amount"] == 500.0


def test_acting_on_an_unfinalised_appraisal_is_a_conflict() -> None:
    with pytest.raises(cycle.CycleConflict, match="finalised"):
        cycle.check_finalized(False, "an appraisal is acknowledged")
    cycle.check_finalized(True, "an appraisal is acknowledged")


# -- finalisation preview and the team view ----------------------------------------------

appraised_lists = st.lists(
    st.fixed_dictionaries(
        {
            "specialist_id": st.sampled_from(["a", "b", "c", "d", "e"]),
            "finalized": st.booleans(),
            "overall_grade": st.sampled_from(domain.OVERALL_GRADES),
        }
    ),
    unique_by=lambda a: a["specialist_id"],
)


@given(appraised_lists, st.sets(st.sampled_from(["a", "b", "c", "x"])))
def test_the_preview_freezes_the_unfinalised_and_plans_the_unqualified(
    appraised: list[dict[str, Any]], planned: set[str]
) -> None:
    plan = cycle.finalize_plan(appraised, planned)
    for a in appraised:
        sid = a["specialist_id"]
        assert (sid in plan.freeze) is not a["finalized"]
        assert (sid in plan.already) is a["finalized"]
        wants_plan = not a["finalized"] and a["overall_grade"] == "unqualified"
        assert (sid in plan.plans) is (wants_plan and sid not in planned)
    assert list(plan.freeze) == sorted(plan.freeze)


entries = st.lists(
    st.fixed_dictionaries(
        {
            "specialist_id": st.text("abc", min_size=1, max_size=3),
            "finalized": st.booleans(),
            "meeting_status": st.sampled_from(["none", *cycle.MEETING_STATUSES]),
            "decision": st.sampled_from([None, {"type": "none"}]),
            "acknowledged_at": st.sampled_from([None, WHEN]),
        }
    )
)


@given(entries)
def test_the_cycle_view_lists_what_is_missing(rows: list[dict[str, Any]]) -> None:
    out = cycle.cycle_summary(rows)
    assert out["missing_meeting"] == [
        r["specialist_id"] for r in rows if r["meeting_status"] != "held"
    ]
    assert out["missing_decision"] == [r["specialist_id"] for r in rows if r["decision"] is None]
    assert out["summary"]["specialists"] == len(rows)
    assert out["summary"]["meetings_held"] + len(out["missing_meeting"]) == len(rows)
    assert out["summary"]["decisions"] + len(out["missing_decision"]) == len(rows)
    for r in rows:
        missing = cycle.missing_steps(r)
        assert ("finalized" in missing) is not r["finalized"]
        assert ("meeting_held" in missing) is (r["meeting_status"] != "held")
        assert ("decision" in missing) is (r["decision"] is None)
        assert ("acknowledged" in missing) is (r["acknowledged_at"] is None)
        assert missing == [s for s in cycle.CYCLE_STEPS if s in missing]


def test_a_cycle_entry() -> None:
    appraisal = {
        "specialist_id": "s1",
        "name": "李伟",
        "team_id": "north",
        "overall_grade": "excellent",
        "finalized": True,
        "finalized_at": WHEN,
        "provisional": False,
        "incentive": {"actions": ["recognition"]},
        "decision": None,
        "acknowledged_at": WHEN,
        "comment": {"text": "谢谢"},
    }
    meetings = [(3, "cancelled", DAY), (5, "scheduled", dt.date(2026, 10, 20))]
    entry = cycle.cycle_entry(appraisal, meetings, "2026Q4", None)
    assert entry["meeting_status"] == "scheduled" and entry["meeting_id"] == 5
    assert entry["meeting_date"] == dt.date(2026, 10, 20)
    assert entry["commented"] is True and entry["suggested"] == ["recognition"]
    assert entry["missing"] == ["meeting_held", "decision"]


# -- defaults follow the scheme, overrides keep working ----------------------------------


@given(
    st.sampled_from(domain.OVERALL_GRADES),
    st.integers(0, 9),
    st.dictionaries(
        st.sampled_from([*domain.OVERALL_GRADES, "promotion_after_consecutive_excellent"]),
        st.none(),
    ),
    st.integers(0, 8),
)
def test_incentives_against_the_reference(
    grade: str, streak: int, keys: dict[str, None], promo: int
) -> None:
    raw: dict[str, Any] = {
        k: promo if k == "promotion_after_consecutive_excellent" else ["custom_" + k[:3]]
        for k in keys
    }
    policy = domain.parse_incentives(raw)
    defaults = {
        "excellent": ["recognition", "pay_adjustment_candidate", "development_opportunity"],
        "qualified": [],
        "unqualified": ["improvement_plan", "coaching"],
        "insufficient_data": [],
    }
    want = list(raw[grade]) if grade in raw else list(defaults[grade])
    threshold = raw.get("promotion_after_consecutive_excellent", 1)
    if grade == "excellent" and threshold > 0 and streak >= threshold:
        at = want.index("pay_adjustment_candidate") + 1 if grade not in raw else len(want)
        want.insert(at, "promotion_candidate")
    assert domain.suggest_incentive(grade, streak, policy)["actions"] == want
