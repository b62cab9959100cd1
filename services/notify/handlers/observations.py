"""Observations of a `kpi.scores` message, their stored form, and silence matching (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from services.notify.rules import Observation, SilenceScope, kpi_higher_is_better
from shared.scores import ScoreSnapshot


def observations(snapshot: ScoreSnapshot) -> list[Observation]:
    """One Observation per KPI of a `kpi.scores` message, in key order."""
    out: list[Observation] = []
    for kpi in sorted(snapshot.kpis):
        v = snapshot.kpis[kpi]
        out.append(
            Observation(
                specialist_id=snapshot.specialist_id,
                kpi=kpi,
                window=snapshot.window.name,
                value=v.value,
                numerator=v.numerator,
                denominator=v.denominator,
                grade=v.grade,
                qualified=v.qualified,
                excellent=v.excellent,
                min_samples=v.min_samples,
                higher_is_better=(
                    kpi_higher_is_better(kpi) if v.higher_is_better is None else v.higher_is_better
                ),
                observed_at=snapshot.computed_at,
            )
        )
    return out


def obs_to_dict(obs: Observation) -> dict[str, Any]:
    return {
        "specialist_id": obs.specialist_id,
        "kpi": obs.kpi,
        "window": obs.window,
        "value": obs.value,
        "numerator": obs.numerator,
        "denominator": obs.denominator,
        "grade": obs.grade,
        "qualified": obs.qualified,
        "excellent": obs.excellent,
        "min_samples": obs.min_samples,
        "higher_is_better": obs.higher_is_better,
        "observed_at": obs.observed_at.isoformat(),
    }


def obs_from_dict(data: Mapping[str, Any]) -> Observation:
    return Observation(
        specialist_id=data["specialist_id"],
        kpi=data["kpi"],
        window=data["window"],
        value=data["value"],
        numerator=data["numerator"],
        denominator=data["denominator"],
        grade=data["grade"],
        qualified=data["qualified"],
        excellent=data["excellent"],
        min_samples=data["min_samples"],
        higher_is_better=data["higher_is_better"],
        observed_at=datetime.fromisoformat(data["observed_at"]),
    )


def is_silenced(
    silences: Iterable[SilenceScope], specialist_id: str, kpi: str, team_id: str | None
) -> bool:
    return any(s.mutes(specialist_id, kpi, team_id) for s in silences)
