"""KPI lines: the catalogue's defaults and the per-organisation overrides (KPI_KPI_LINES)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from shared.catalogue import CATALOGUE, KPI_KEYS, NPS, RATIO_KEYS, TRAINING_SESSIONS

# Line comparisons tolerate float noise so that e.g. 17/20 is exactly "at" 0.85.
EPSILON: Final = 1e-9


@dataclass(frozen=True)
class KpiLine:
    """Thresholds of one KPI; ``None`` means the line does not exist."""

    qualified: float | None
    excellent: float | None
    min_samples: int | None
    higher_is_better: bool


DEFAULT_LINES: Final[Mapping[str, KpiLine]] = MappingProxyType(
    {
        key: KpiLine(kpi.qualified, kpi.excellent, kpi.min_samples, kpi.higher_is_better)
        for key, kpi in CATALOGUE.items()
    }
)

_LINE_FIELDS: Final = ("qualified", "excellent", "min_samples")


def _threshold(key: str, name: str, raw: object) -> float | None:
    if raw is None:
        return None
    # bool is an int subclass; a JSON true/false here is always a config mistake.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"KPI line {key}.{name} must be a number or null, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"KPI line {key}.{name} must be finite, got {raw!r}")
    if key in RATIO_KEYS and not 0.0 <= value <= 1.0:
        raise ValueError(f"KPI line {key}.{name} is a ratio and must be in 0..1, got {raw!r}")
    if value < 0.0:
        raise ValueError(f"KPI line {key}.{name} must be >= 0, got {raw!r}")
    return value


def _min_samples(key: str, raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # JSON configs sometimes carry 10.0 for 10
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"KPI line {key}.min_samples must be an integer >= 0 or null, got {raw!r}")
    return raw


def lines_with_overrides(
    overrides: Mapping[str, Mapping[str, float | int | None]],
) -> dict[str, KpiLine]:
    """Default lines with per-organisation overrides applied; ValueError names key and field."""
    lines = dict(DEFAULT_LINES)
    for key, fields in overrides.items():
        if key not in DEFAULT_LINES:
            raise ValueError(
                f"unknown KPI key {key!r} in line overrides (known: {', '.join(KPI_KEYS)})"
            )
        if not isinstance(fields, Mapping):
            raise ValueError(f"KPI line overrides for {key} must be an object, got {fields!r}")
        base = lines[key]
        values: dict[str, Any] = {
            "qualified": base.qualified,
            "excellent": base.excellent,
            "min_samples": base.min_samples,
        }
        for name, raw in fields.items():
            if name not in _LINE_FIELDS:
                raise ValueError(
                    f"unknown field {key}.{name} in line overrides "
                    f"(known: {', '.join(_LINE_FIELDS)})"
                )
            if name == "min_samples":
                values[name] = _min_samples(key, raw)
            else:
                values[name] = _threshold(key, name, raw)
        qualified, excellent, min_samples = (
            values["qualified"],
            values["excellent"],
            values["min_samples"],
        )
        # The spec gives nps no lines and training no excellent tier or sample minimum;
        # accepting such overrides would silently do nothing, so reject them loudly.
        if key == NPS and (qualified, excellent, min_samples) != (None, None, None):
            raise ValueError("KPI line nps is informational and takes no lines or min_samples")
        if key == TRAINING_SESSIONS and (excellent is not None or min_samples is not None):
            field_name = "excellent" if excellent is not None else "min_samples"
            raise ValueError(
                f"KPI line training_sessions.{field_name} is not supported (must be null)"
            )
        # The §3a measures have no default lines: qualified null keeps them ungraded.
        if CATALOGUE[key].graded and qualified is None:
            raise ValueError(f"KPI line {key}.qualified is required for a graded KPI")
        if qualified is None and (excellent is not None or min_samples is not None):
            field_name = "excellent" if excellent is not None else "min_samples"
            raise ValueError(f"KPI line {key}.{field_name} needs {key}.qualified")
        if qualified is not None and excellent is not None:
            worse = excellent < qualified if base.higher_is_better else excellent > qualified
            if worse:
                raise ValueError(
                    f"KPI line {key}.excellent ({excellent:g}) must not be worse than "
                    f"qualified ({qualified:g})"
                )
        lines[key] = KpiLine(qualified, excellent, min_samples, base.higher_is_better)
    return lines
