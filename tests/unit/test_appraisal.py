"""Appraisal domain: overall-grade rule table, insufficient data, incentives, plans, diffs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.appraisal import domain as ap
from services.scoring.kpi.grading import evaluate_all
from services.scoring.kpi.lines import DEFAULT_LINES
from services.scoring.kpi.windows import parse_window
from shared.catalogue import GRADED_KEYS

E, Q, U, N = "excellent", "qualified", "unqualified", "insufficient_data"  # N: no data
SIX = ap.RULE_KEYS
RULE = ap.AppraisalRule()


def grades(*six: str, training: str = Q) -> dict[str, str | None]:
    assert len(six) == 6
    return {**dict(zip(SIX, six, strict=True)), "training_sessions": training, "nps": None}


@pytest.mark.parametrize(
    ("case", "want"),
    [
        # (six KPI grades in SPEC order, training) -> overall
        ((E, E, E, E, Q, Q), E),
        ((E, E, E, Q, Q, Q), Q),  # three excellent are not enough
        ((E, E, E, E, E, E), E),
        ((E, E, E, E, E, U), U),  # one unqualified beats any number of excellent
        ((Q, Q, Q, Q, Q, Q), Q),
        ((U, Q, Q, Q, Q, Q), U),
        ((N, N, N, N, N, N), Q),  # default rule: no data is not a failure...
        ((E, E, E, N, N, N), Q),  # ...and not a success: insufficient is never excellent
        ((E, E, E, E, N, N), E),
        ((U, N, N, N, N, N), U),  # an unqualified KPI with enough data counts
        ((Q, Q, Q, Q, Q, Q, U), U),  # no positive training delivered
        ((E, E, E, E, E, E, U), U),
    ],
)
def test_overall_rule_table(case: tuple[str, ...], want: str) -> None:
    six, training = case[:6], (case[6] if len(case) > 6 else Q)
    assert ap.overall_grade(grades(*six, training=training), RULE).grade == want


def test_insufficient_data_is_listed_never_pass_or_fail() -> None:
    result = ap.overall_grade(grades(E, N, Q, N, U, E), RULE)
    assert result.grade == U
    assert result.insufficient_data == ("resolution_rate", "record_accuracy")
    assert result.unqualified == ("followup_rate",)
    assert result.excellent == ("customer_satisfaction", "collaboration_score")
    assert result.basis()["training_delivered"] is True


def test_configurable_rule() -> None:
    lenient = ap.parse_rule({"excellent_min_count": 2, "require_training": False})
    assert ap.overall_grade(grades(E, E, Q, Q, Q, Q, training=U), lenient).grade == E
    strict = ap.parse_rule({"min_graded_kpis": 3})
    assert ap.overall_grade(grades(Q, Q, N, N, N, N), strict).grade == N
    assert ap.overall_grade(grades(Q, Q, Q, N, N, N), strict).grade == Q
    assert ap.overall_grade(grades(U, N, N, N, N, N), strict).grade == U


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"excellent_min_count": 0}, "excellent_min_count"),
        ({"excellent_min_count": 7}, "excellent_min_count"),
        ({"excellent_min_count": True}, "excellent_min_count"),
        ({"require_training": "yes"}, "require_training"),
        ({"min_graded_kpis": -1}, "min_graded_kpis"),
        ({"excelent_min_count": 3}, "excelent_min_count"),
    ],
)
def test_bad_rule_names_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ap.parse_rule(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"great": []}, "great"),
        ({"excellent": "recognition"}, "excellent must be a list"),
        ({"excellent": ["Big Bonus"]}, r"excellent\[0\]"),
        ({"promotion_after_consecutive_excellent": 9}, "promotion_after_consecutive_excellent"),
    ],
)
def test_bad_incentives_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ap.parse_incentives(raw)


def test_default_incentives_follow_the_scheme() -> None:
    """Excellent: recognition, pay adjustment, promotion consideration and a development
    opportunity, from the first excellent quarter; unqualified: improvement plan and coaching
    (no longer "training", which read as a remedy only the unqualified get)."""
    policy = ap.IncentivePolicy()
    reward = [
        "recognition",
        "pay_adjustment_candidate",
        "promotion_candidate",
        "development_opportunity",
    ]
    first = ap.suggest_incentive(E, ap.consecutive_excellent(E, [Q, E]), policy)
    assert first["actions"] == reward
    assert first["consecutive_excellent"] == 1
    assert first["labels"]["zh-CN"] == ["表彰", "调薪", "纳入晋升考虑", "培训与发展机会"]
    assert first["labels"]["en"] == [
        "recognition",
        "pay adjustment",
        "promotion consideration",
        "training / development opportunity",
    ]
    second = ap.suggest_incentive(E, ap.consecutive_excellent(E, [E, Q]), policy)
    assert second["actions"] == reward and second["consecutive_excellent"] == 2
    assert ap.suggest_incentive(Q, 0, policy)["actions"] == []
    assert ap.suggest_incentive(N, 0, policy)["actions"] == []
    unqualified = ap.suggest_incentive(U, 0, policy)
    assert unqualified["actions"] == ["improvement_plan", "coaching"]
    assert unqualified["labels"]["en"] == ["improvement plan", "coaching"]
    assert unqualified["labels"]["zh-CN"] == ["制定改进计划", "辅导"]
    assert "training" not in unqualified["actions"]


def test_promotion_after_two_excellent_quarters_when_configured() -> None:
    """The older default (promotion only after two excellent quarters in a row) is one
    setting away, and promotion keeps its place after the pay adjustment."""
    policy = ap.parse_incentives({"promotion_after_consecutive_excellent": 2})
    first = ap.suggest_incentive(E, 1, policy)
    assert first["actions"] == [
        "recognition",
        "pay_adjustment_candidate",
        "development_opportunity",
    ]
    assert ap.suggest_incentive(E, 2, policy)["actions"] == [
        "recognition",
        "pay_adjustment_candidate",
        "promotion_candidate",
        "development_opportunity",
    ]
    custom = ap.parse_incentives({"excellent": ["bonus"], "unqualified": ["training"]})
    assert ap.suggest_incentive(E, 1, custom)["actions"] == ["bonus", "promotion_candidate"]
    assert ap.suggest_incentive(U, 0, custom)["labels"]["en"] == ["training suggested"]


def test_incentive_mapping_is_configurable() -> None:
    policy = ap.parse_incentives(
        {"qualified": ["thank_you_note"], "promotion_after_consecutive_excellent": 3}
    )
    assert ap.suggest_incentive(Q, 0, policy)["actions"] == ["thank_you_note"]
    assert ap.suggest_incentive(Q, 0, policy)["labels"]["en"] == ["thank_you_note"]
    assert "promotion_candidate" not in ap.suggest_incentive(E, 2, policy)["actions"]
    assert "promotion_candidate" in ap.suggest_incentive(E, 3, policy)["actions"]
    off = ap.parse_incentives({"promotion_after_consecutive_excellent": 0})
    assert "promotion_candidate" not in ap.suggest_incentive(E, 8, off)["actions"]


@given(st.sampled_from(ap.OVERALL_GRADES), st.lists(st.sampled_from([E, Q, U, N, None])))
def test_consecutive_excellent_matches_a_loop(grade: str, previous: list[str | None]) -> None:
    want = 0
    for g in [grade, *previous]:
        if g != E:
            break
        want += 1
    assert ap.consecutive_excellent(grade, previous) == want


def test_quarters_arithmetic() -> None:
    assert ap.previous_quarters("2026Q1", 3) == ["2025Q4", "2025Q3", "2025Q2"]
    assert ap.previous_quarters("2026Q3", 0) == []
    assert ap.next_quarter("2026Q4") == "2027Q1"
    assert ap.next_quarter("2026q2") == "2026Q3"


def _values(sums: dict[str, tuple[float, int]]) -> dict[str, Any]:
    return evaluate_all(sums, parse_window("2026Q3", dt.date(2026, 10, 1)), DEFAULT_LINES)


def test_build_and_diff_frozen_vs_live() -> None:
    sums = {
        "customer_satisfaction": (19.0, 20),
        "resolution_rate": (20.0, 20),
        "avg_response_time_hours": (50.0, 10),
        "record_accuracy": (10.0, 10),
        "followup_rate": (19.0, 20),
        "training_sessions": (1.0, 1),
    }
    frozen = ap.build_appraisal(_values(sums), RULE, ap.IncentivePolicy(), [], "calendar-hours")
    assert frozen["overall_grade"] == E
    assert frozen["insufficient_data"] == ["collaboration_score"]
    assert ap.diff_appraisals(frozen, frozen) == []
    late = dict(sums, resolution_rate=(20.0, 24))  # four late unresolved closures
    live = ap.build_appraisal(_values(late), RULE, ap.IncentivePolicy(), [], "calendar-hours")
    fields = {d["field"]: (d["frozen"], d["live"]) for d in ap.diff_appraisals(frozen, live)}
    assert fields["kpis.resolution_rate.denominator"] == (20, 24)
    assert fields["kpis.resolution_rate.grade"] == (E, U)
    assert fields["overall_grade"] == (E, U)
    assert fields["incentive.actions"][1] == ["improvement_plan", "coaching"]
    assert "kpis.customer_satisfaction.value" not in fields


def test_proposed_goals_for_an_unqualified_appraisal() -> None:
    sums = {"resolution_rate": (8.0, 10), "customer_satisfaction": (9.0, 10)}
    appraised = ap.build_appraisal(_values(sums), RULE, ap.IncentivePolicy(), [], "x")
    assert appraised["overall_grade"] == U
    due = dt.date(2026, 12, 31)
    goals = ap.proposed_goals(appraised, DEFAULT_LINES, due)
    assert goals == [
        ap.Goal("resolution_rate", 0.90, due, 0.8),
        ap.Goal("training_sessions", 1.0, due, 0),
    ]


# -- plan lifecycle and progress ------------------------------------------------------------


def test_transitions() -> None:
    ap.check_transition("draft", "open")
    ap.check_transition("open", "on_track")
    ap.check_transition("on_track", "achieved")
    ap.check_transition("achieved", "open")
    ap.check_transition("missed", "missed")  # no-op
    for old, new in [("draft", "achieved"), ("open", "draft"), ("achieved", "missed")]:
        with pytest.raises(ap.TransitionError, match=f"from '{old}' to '{new}'"):
            ap.check_transition(old, new)
    with pytest.raises(ap.TransitionError, match="status must be one of"):
        ap.check_transition("open", "done")


@pytest.mark.parametrize(
    ("kpi", "target", "message"),
    [
        ("nps", 10.0, "goals\\[0\\].kpi"),
        ("customer_satisfaction", 85.0, "ratio"),
        ("avg_response_time_hours", -1.0, ">= 0"),
        ("avg_response_time_hours", float("nan"), "finite"),
    ],
)
def test_bad_goals(kpi: str, target: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ap.check_goal(ap.Goal(kpi, target, dt.date(2026, 12, 31)), "goals[0]")


TODAY = dt.date(2026, 11, 15)
DUE = dt.date(2026, 12, 31)
WINDOW = (dt.date(2026, 10, 1), TODAY)


def progress(goal: ap.Goal, num: float, den: int, today: dt.date = TODAY) -> ap.GoalProgress:
    return ap.goal_progress(goal, num, den, DEFAULT_LINES[goal.kpi], today, WINDOW)


def test_goal_progress_statuses() -> None:
    goal = ap.Goal("resolution_rate", 0.9, DUE, baseline=0.8)
    assert progress(goal, 19, 20).status == "achieved"
    assert progress(goal, 17, 20).status == "on_track"  # 0.85 > baseline 0.8
    assert progress(goal, 15, 20).status == "behind"
    assert progress(goal, 15, 20, DUE + dt.timedelta(days=1)).status == "missed"
    assert progress(goal, 5, 5).status == "insufficient_data"  # min samples 10
    response = ap.Goal("avg_response_time_hours", 24.0, DUE, baseline=30.0)
    assert progress(response, 200.0, 10).status == "achieved"  # 20 h, lower is better
    assert progress(response, 280.0, 10).status == "on_track"  # 28 h < 30 h
    training = ap.Goal("training_sessions", 1.0, DUE, baseline=0.0)
    assert progress(training, 0.0, 0).status == "behind"
    assert progress(training, 1.0, 1).status == "achieved"
    assert progress(training, 1.0, 1).value == 1.0


def test_suggested_plan_status() -> None:
    def p(status: str) -> ap.GoalProgress:
        goal = ap.Goal("resolution_rate", 0.9, DUE)
        return ap.GoalProgress(goal, None, None, status, WINDOW[0], WINDOW[1])

    assert ap.suggested_status([]) == "open"
    assert ap.suggested_status([p("achieved"), p("achieved")]) == "achieved"
    assert ap.suggested_status([p("achieved"), p("on_track")]) == "on_track"
    assert ap.suggested_status([p("on_track"), p("behind")]) == "open"
    assert ap.suggested_status([p("insufficient_data")]) == "open"
    assert ap.suggested_status([p("achieved"), p("missed")]) == "missed"


def test_measurement_window() -> None:
    goal = ap.Goal("resolution_rate", 0.9, dt.date(2026, 11, 30))
    assert ap.measurement_window("2026Q4", goal, TODAY) == (dt.date(2026, 10, 1), TODAY)
    late = dt.date(2027, 1, 5)
    assert ap.measurement_window("2026Q4", goal, late) == (dt.date(2026, 10, 1), goal.due)
    early = dt.date(2026, 9, 1)
    assert ap.measurement_window("2026Q4", goal, early) == (dt.date(2026, 10, 1),) * 2


def test_goal_json_round_trip() -> None:
    goal = ap.Goal("followup_rate", 0.8, DUE, None)
    assert ap.Goal.from_json(goal.to_json()) == goal


def test_plan_kpis_are_the_graded_ones() -> None:
    assert ap.PLAN_KPIS == GRADED_KEYS and "nps" not in ap.PLAN_KPIS


def test_settings_validate_and_name_the_variable(tmp_path: Any) -> None:
    from services.scoring.config import ScoringConfig
    from shared.settings import SettingsError, load_settings

    def config(**env: str) -> ScoringConfig:
        return ScoringConfig.from_settings(load_settings(**env))

    with pytest.raises(SettingsError, match=r"KPI_APPRAISAL_RULE: .*excellent_min_count"):
        config(appraisal_rule='{"excellent_min_count": 9}')
    with pytest.raises(SettingsError, match=r"KPI_INCENTIVES: .*must be a JSON object"):
        config(incentives="{not json")
    bad = tmp_path / "cal.yaml"
    bad.write_text("rest_weekdays: [someday]\n")
    with pytest.raises(SettingsError, match=r"KPI_BUSINESS_CALENDAR: .*rest_weekdays\[0\]"):
        config(business_calendar=str(bad))
    ok = config(appraisal_rule='{"require_training": false}', incentives="")
    assert ok.appraisal_rule == ap.AppraisalRule(require_training=False)
    assert ok.measure.hours_fn is None and ok.measure.calendar == "calendar-hours"
