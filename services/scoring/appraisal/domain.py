"""Pure appraisal domain: overall grade rule, incentives, improvement-plan progress, diffs."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from services.scoring.kpi.grading import KpiValue, evaluate
from services.scoring.kpi.lines import EPSILON, KpiLine
from services.scoring.kpi.windows import Window, parse_quarter, quarter_bounds
from shared.catalogue import GRADED_KEYS, KPI_KEYS, RATIO_KEYS, TRAINING_SESSIONS

OVERALL_GRADES: Final = ("excellent", "qualified", "unqualified", "insufficient_data")
# Training has no excellent tier and is handled by require_training, so it is not counted
# among "KPIs with enough data" nor among those that can be excellent.
RULE_KEYS: Final[tuple[str, ...]] = tuple(k for k in GRADED_KEYS if k != TRAINING_SESSIONS)

# ---------------------------------------------------------------------------
# Configuration: KPI_APPRAISAL_RULE and KPI_INCENTIVES
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppraisalRule:
    """How per-KPI grades combine into the overall grade."""

    excellent_min_count: int = 4
    require_training: bool = True
    # Fewer KPIs with enough data than this => overall "insufficient_data" (0 = never).
    min_graded_kpis: int = 0


def _int_field(raw: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def parse_rule(raw: Mapping[str, Any] | None) -> AppraisalRule:
    """``KPI_APPRAISAL_RULE`` JSON -> rule; ValueError names the field."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be a JSON object, got {raw!r}")
    known = {"excellent_min_count", "require_training", "min_graded_kpis"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    require_training = raw.get("require_training", True)
    if not isinstance(require_training, bool):
        raise ValueError(f"require_training must be true or false, got {require_training!r}")
    n = len(RULE_KEYS)
    return AppraisalRule(
        excellent_min_count=_int_field(raw, "excellent_min_count", 4, 1, n),
        require_training=require_training,
        min_graded_kpis=_int_field(raw, "min_graded_kpis", 0, 0, n),
    )


RECOGNITION: Final = "recognition"
PAY_ADJUSTMENT: Final = "pay_adjustment_candidate"
PROMOTION: Final = "promotion_candidate"
DEVELOPMENT: Final = "development_opportunity"
IMPROVEMENT_PLAN: Final = "improvement_plan"
COACHING: Final = "coaching"
TRAINING: Final = "training"

# Labels of the action codes the platform knows; a code KPI_INCENTIVES adds is shown as is.
ACTION_LABELS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        RECOGNITION: {"en": "recognition", "zh-CN": "表彰"},
        PAY_ADJUSTMENT: {"en": "pay adjustment", "zh-CN": "调薪"},
        PROMOTION: {"en": "promotion consideration", "zh-CN": "纳入晋升考虑"},
        DEVELOPMENT: {
            "en": "training / development opportunity",
            "zh-CN": "培训与发展机会",
        },
        IMPROVEMENT_PLAN: {"en": "improvement plan", "zh-CN": "制定改进计划"},
        COACHING: {"en": "coaching", "zh-CN": "辅导"},
        TRAINING: {"en": "training suggested", "zh-CN": "建议参加培训"},
    }
)
_ACTION_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class IncentivePolicy:
    """Suggested actions per overall grade, plus promotion after consecutive excellent quarters.

    The defaults follow the appraisal scheme: an excellent quarter is rewarded with
    recognition, a pay adjustment, promotion consideration and a training / development
    opportunity; an unqualified one gets an improvement plan with coaching.
    """

    by_grade: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType(
            {
                "excellent": (RECOGNITION, PAY_ADJUSTMENT, DEVELOPMENT),
                "qualified": (),
                "unqualified": (IMPROVEMENT_PLAN, COACHING),
                "insufficient_data": (),
            }
        )
    )
    # Excellent quarters in a row that add promotion consideration (1: every excellent
    # quarter; 0: never).
    promotion_after_consecutive_excellent: int = 1

    def action_codes(self) -> frozenset[str]:
        """Every action code this policy or the platform knows (what a decision may record)."""
        configured = {a for actions in self.by_grade.values() for a in actions}
        return frozenset({*ACTION_LABELS, *configured})


def parse_incentives(raw: Mapping[str, Any] | None) -> IncentivePolicy:
    """``KPI_INCENTIVES`` JSON (grades -> action lists, overrides defaults) -> policy."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be a JSON object, got {raw!r}")
    default = IncentivePolicy()
    by_grade = dict(default.by_grade)
    promo_key = "promotion_after_consecutive_excellent"
    for name, value in raw.items():
        if name == promo_key:
            continue
        if name not in OVERALL_GRADES:
            raise ValueError(
                f"unknown field {name!r} (known: {', '.join(OVERALL_GRADES)}, {promo_key})"
            )
        if not isinstance(value, list):
            raise ValueError(f"{name} must be a list of action codes, got {value!r}")
        for i, action in enumerate(value):
            if not isinstance(action, str) or not _ACTION_RE.match(action):
                raise ValueError(f"{name}[{i}] must be a snake_case action code, got {action!r}")
        by_grade[name] = tuple(dict.fromkeys(value))
    promo = _int_field(raw, promo_key, default.promotion_after_consecutive_excellent, 0, 8)
    return IncentivePolicy(MappingProxyType(by_grade), promo)


# ---------------------------------------------------------------------------
# Overall grade and incentive
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Overall:
    grade: str
    unqualified: tuple[str, ...]
    excellent: tuple[str, ...]
    insufficient_data: tuple[str, ...]
    training_delivered: bool

    def basis(self) -> dict[str, Any]:
        return {
            "unqualified": list(self.unqualified),
            "excellent": list(self.excellent),
            "insufficient_data": list(self.insufficient_data),
            "training_delivered": self.training_delivered,
        }


def overall_grade(grades: Mapping[str, str | None], rule: AppraisalRule) -> Overall:
    """Combine per-KPI grades (quarter window) by ``rule``.

    unqualified: a KPI with enough data is unqualified, or training is required and was not
    delivered; excellent: none unqualified and at least ``excellent_min_count`` excellent;
    otherwise qualified. KPIs with insufficient data count neither way (they are listed).
    """
    unqualified = tuple(k for k in RULE_KEYS if grades.get(k) == "unqualified")
    excellent = tuple(k for k in RULE_KEYS if grades.get(k) == "excellent")
    insufficient = tuple(k for k in RULE_KEYS if grades.get(k) in ("insufficient_data", None))
    training = grades.get(TRAINING_SESSIONS) not in ("unqualified", None)
    graded = len(RULE_KEYS) - len(insufficient)
    if unqualified or (rule.require_training and not training):
        grade = "unqualified"
    elif graded < rule.min_graded_kpis:
        grade = "insufficient_data"
    elif len(excellent) >= rule.excellent_min_count:
        grade = "excellent"
    else:
        grade = "qualified"
    return Overall(grade, unqualified, excellent, insufficient, training)


def consecutive_excellent(grade: str, previous: Sequence[str | None]) -> int:
    """Excellent quarters in a row ending with this one (``previous``: most recent first)."""
    if grade != "excellent":
        return 0
    count = 1
    for g in previous:
        if g != "excellent":
            break
        count += 1
    return count


def suggest_incentive(grade: str, streak: int, policy: IncentivePolicy) -> dict[str, Any]:
    """Suggested actions for an overall grade; ``streak`` = consecutive excellent quarters."""
    actions = list(policy.by_grade.get(grade, ()))
    promo = policy.promotion_after_consecutive_excellent
    if grade == "excellent" and promo > 0 and streak >= promo and PROMOTION not in actions:
        # In the scheme's order: recognition, pay adjustment, promotion, development.
        at = actions.index(PAY_ADJUSTMENT) + 1 if PAY_ADJUSTMENT in actions else len(actions)
        actions.insert(at, PROMOTION)
    return {
        "actions": actions,
        "consecutive_excellent": streak,
        "labels": {
            lang: [ACTION_LABELS.get(a, {}).get(lang, a) for a in actions]
            for lang in ("en", "zh-CN")
        },
    }


def build_appraisal(
    values: Mapping[str, KpiValue],
    rule: AppraisalRule,
    policy: IncentivePolicy,
    previous_grades: Sequence[str | None],
    calendar: str,
) -> dict[str, Any]:
    """The computed part of an appraisal (what a snapshot freezes)."""
    overall = overall_grade({k: v.grade for k, v in values.items()}, rule)
    streak = consecutive_excellent(overall.grade, previous_grades)
    return {
        "kpis": {k: v.to_dict() for k, v in values.items()},
        "overall_grade": overall.grade,
        "insufficient_data": list(overall.insufficient_data),
        "basis": overall.basis(),
        "incentive": suggest_incentive(overall.grade, streak, policy),
        "calendar": calendar,
    }


def previous_quarters(quarter: str, n: int) -> list[str]:
    """The ``n`` quarters before ``quarter`` (most recent first)."""
    year, q = parse_quarter(quarter)
    out: list[str] = []
    for _ in range(n):
        year, q = (year - 1, 4) if q == 1 else (year, q - 1)
        if year < 1:
            break
        out.append(f"{year:04d}Q{q}")
    return out


def next_quarter(quarter: str) -> str:
    year, q = parse_quarter(quarter)
    year, q = (year + 1, 1) if q == 4 else (year, q + 1)
    return f"{year:04d}Q{q}"


# ---------------------------------------------------------------------------
# Frozen vs live
# ---------------------------------------------------------------------------

_COMPARED: Final = ("value", "numerator", "denominator", "grade")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def diff_appraisals(frozen: Mapping[str, Any], live: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Differences between a finalised snapshot and the live recomputation, by field path."""
    out: list[dict[str, Any]] = []

    def check(path: str, a: Any, b: Any) -> None:
        if not _same(a, b):
            out.append({"field": path, "frozen": a, "live": b})

    frozen_kpis = frozen.get("kpis") or {}
    live_kpis = live.get("kpis") or {}
    for key in sorted(set(frozen_kpis) | set(live_kpis), key=_kpi_order):
        a, b = frozen_kpis.get(key) or {}, live_kpis.get(key) or {}
        for name in _COMPARED:
            check(f"kpis.{key}.{name}", a.get(name), b.get(name))
    check("overall_grade", frozen.get("overall_grade"), live.get("overall_grade"))
    check(
        "incentive.actions",
        (frozen.get("incentive") or {}).get("actions"),
        (live.get("incentive") or {}).get("actions"),
    )
    check("calendar", frozen.get("calendar"), live.get("calendar"))
    return out


def _kpi_order(key: str) -> tuple[int, str]:
    keys = KPI_KEYS
    return (keys.index(key) if key in keys else len(keys), key)


# ---------------------------------------------------------------------------
# Improvement plans
# ---------------------------------------------------------------------------

PLAN_STATUSES: Final = ("draft", "open", "on_track", "achieved", "missed")
# Who decides: people. Progress (below) only suggests; it never moves a plan by itself.
TRANSITIONS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "draft": frozenset({"open"}),
        "open": frozenset({"on_track", "achieved", "missed"}),
        "on_track": frozenset({"open", "achieved", "missed"}),
        "achieved": frozenset({"open"}),
        "missed": frozenset({"open"}),
    }
)
PLAN_KPIS: Final[tuple[str, ...]] = GRADED_KEYS


class TransitionError(ValueError):
    """A plan status change that the lifecycle does not allow."""


def check_transition(old: str, new: str) -> None:
    if new not in PLAN_STATUSES:
        raise TransitionError(f"status must be one of {', '.join(PLAN_STATUSES)}, got {new!r}")
    if old != new and new not in TRANSITIONS.get(old, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(old, frozenset()))) or "none"
        raise TransitionError(f"a plan cannot go from {old!r} to {new!r} (allowed: {allowed})")


@dataclass(frozen=True)
class Goal:
    """One goal of a plan: reach ``target`` on ``kpi`` by ``due`` (from ``baseline``)."""

    kpi: str
    target: float
    due: dt.date
    baseline: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kpi": self.kpi,
            "target": self.target,
            "due": self.due.isoformat(),
            "baseline": self.baseline,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Goal:
        return cls(
            str(raw["kpi"]),
            float(raw["target"]),
            dt.date.fromisoformat(str(raw["due"])),
            None if raw.get("baseline") is None else float(raw["baseline"]),
        )


def check_goal(goal: Goal, where: str) -> None:
    """ValueError naming ``where.field`` when a goal cannot be measured."""
    if goal.kpi not in PLAN_KPIS:
        raise ValueError(
            f"{where}.kpi must be a graded KPI key ({', '.join(PLAN_KPIS)}), got {goal.kpi!r}"
        )
    if not math.isfinite(goal.target) or goal.target < 0:
        raise ValueError(f"{where}.target must be a finite number >= 0, got {goal.target!r}")
    if goal.kpi in RATIO_KEYS and goal.target > 1:
        raise ValueError(f"{where}.target is a ratio and must be in 0..1, got {goal.target!r}")


@dataclass(frozen=True)
class GoalProgress:
    goal: Goal
    value: float | None
    denominator: int | None
    status: str  # achieved | on_track | behind | missed | insufficient_data
    measured_from: dt.date
    measured_to: dt.date

    def to_json(self) -> dict[str, Any]:
        return {
            **self.goal.to_json(),
            "value": self.value,
            "denominator": self.denominator,
            "status": self.status,
            "measured": {
                "from": self.measured_from.isoformat(),
                "to": self.measured_to.isoformat(),
            },
        }


def measurement_window(quarter: str, goal: Goal, today: dt.date) -> tuple[dt.date, dt.date]:
    """Local dates a goal is measured on: from the plan quarter's start to due (or today)."""
    start, _ = quarter_bounds(*parse_quarter(quarter))
    end = min(goal.due, today)
    return start, max(start, end)


def goal_progress(
    goal: Goal,
    num: float,
    den: int,
    line: KpiLine,
    today: dt.date,
    window: tuple[dt.date, dt.date],
) -> GoalProgress:
    """Where a goal stands on its measurement window (sums ``num``/``den`` over it)."""
    target_line = KpiLine(goal.target, None, line.min_samples, line.higher_is_better)
    # A quarter-kind window grades training counts too (they are only graded on quarters).
    win = Window(f"{window[0]}..{window[1]}", window[0], window[1], "quarter")
    value = evaluate(goal.kpi, num, den, target_line, win)
    current = None if value.value is None else float(value.value)
    if value.grade == "qualified" or value.grade == "excellent":
        status = "achieved"
    elif value.grade == "insufficient_data":
        status = "insufficient_data"
    elif today > goal.due:
        status = "missed"
    elif (
        current is not None
        and goal.baseline is not None
        and _better(current, goal.baseline, line.higher_is_better)
    ):
        status = "on_track"
    else:
        status = "behind"
    return GoalProgress(goal, current, value.denominator, status, window[0], window[1])


def _better(value: float, baseline: float, higher_is_better: bool) -> bool:
    return value > baseline + EPSILON if higher_is_better else value < baseline - EPSILON


def suggested_status(progress: Sequence[GoalProgress]) -> str:
    """The plan status live KPIs suggest (open, on_track, achieved, missed)."""
    statuses = [p.status for p in progress]
    if not statuses:
        return "open"
    if all(s == "achieved" for s in statuses):
        return "achieved"
    if any(s == "missed" for s in statuses):
        return "missed"
    if all(s in ("achieved", "on_track") for s in statuses):
        return "on_track"
    return "open"


def proposed_goals(
    appraised: Mapping[str, Any], lines: Mapping[str, KpiLine], due: dt.date
) -> list[Goal]:
    """Goals of a draft plan for an unqualified appraisal: back to the qualified line."""
    basis = appraised.get("basis") or {}
    kpis = appraised.get("kpis") or {}
    goals: list[Goal] = []
    for key in basis.get("unqualified", []):
        line = lines[key]
        if line.qualified is None:
            continue
        value = (kpis.get(key) or {}).get("value")
        goals.append(Goal(key, line.qualified, due, None if value is None else float(value)))
    if not basis.get("training_delivered", True):
        line = lines[TRAINING_SESSIONS]
        value = (kpis.get(TRAINING_SESSIONS) or {}).get("value")
        goals.append(
            Goal(TRAINING_SESSIONS, line.qualified or 1.0, due, None if value is None else value)
        )
    return goals
