"""Grading: a KPI's value and grade from its window sums and its lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.scoring.kpi.lines import DEFAULT_LINES, EPSILON, KpiLine
from services.scoring.kpi.windows import Window
from shared.catalogue import CATALOGUE, KPI_KEYS, NPS, TRAINING_SESSIONS, Grade


@dataclass(frozen=True)
class KpiValue:
    """One KPI over one window, shaped like the SPEC §4 ``kpis`` entries."""

    value: float | None
    numerator: float | None
    denominator: int | None
    grade: Grade | None
    qualified: float | None
    excellent: float | None
    min_samples: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "grade": self.grade,
            "qualified": self.qualified,
            "excellent": self.excellent,
            "min_samples": self.min_samples,
        }


def _as_count(num: float) -> float:
    # Counts arrive as floats from summed buckets; show 17 rather than 17.0 without rounding.
    return int(num) if float(num).is_integer() else num


def _meets(value: float, line: float, higher_is_better: bool) -> bool:
    return value >= line - EPSILON if higher_is_better else value <= line + EPSILON


def _grade(value: float, line: KpiLine) -> Grade:
    if line.excellent is not None and _meets(value, line.excellent, line.higher_is_better):
        return "excellent"
    if line.qualified is None or _meets(value, line.qualified, line.higher_is_better):
        return "qualified"
    return "unqualified"


def evaluate(key: str, num: float, den: int, line: KpiLine, window: Window) -> KpiValue:
    """Value and grade of ``key`` from its window sums (numerator, denominator)."""
    if key not in DEFAULT_LINES:
        raise ValueError(f"unknown KPI key {key!r}")
    if key == TRAINING_SESSIONS:
        # value = numerator = number of sessions; there is no denominator (SPEC §4).
        count = _as_count(num)
        graded = window.kind in ("qtd", "quarter")
        return KpiValue(
            value=count,
            numerator=count,
            denominator=None,
            grade=_grade(float(num), line) if graded else None,
            qualified=line.qualified,
            excellent=line.excellent,
            min_samples=line.min_samples,
        )
    # Sums of hours stay floats; counts read as integers.
    numerator = num if CATALOGUE[key].unit == "hours" else _as_count(num)
    if den <= 0:
        value: float | None = None
    elif key == NPS:
        value = num / den * 100
    else:
        value = num / den
    grade: Grade | None
    if key == NPS or line.qualified is None:
        grade = None  # informational: nps, and a §3a measure without lines
    elif value is None or den < (line.min_samples or 0):
        grade = "insufficient_data"
    else:
        grade = _grade(value, line)
    return KpiValue(
        value=value,
        numerator=numerator,
        denominator=den,
        grade=grade,
        qualified=line.qualified,
        excellent=line.excellent,
        min_samples=line.min_samples,
    )


def evaluate_all(
    sums: Mapping[str, tuple[float, int]],
    window: Window,
    lines: Mapping[str, KpiLine] = DEFAULT_LINES,
    keys: Sequence[str] = KPI_KEYS,
) -> dict[str, KpiValue]:
    """Every KPI (SPEC §1 and §3a, or ``keys``) in table order; a missing key counts as 0/0."""
    return {
        key: evaluate(key, *sums.get(key, (0.0, 0)), lines.get(key, DEFAULT_LINES[key]), window)
        for key in keys
    }
