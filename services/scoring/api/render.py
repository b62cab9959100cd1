"""Response bodies of the KPI routes: plain dicts encoded once with orjson."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import Response

from services.scoring.kpi.grading import KpiValue
from services.scoring.queries import SpecialistSums, Sums


def json_response(body: Any) -> Response:
    # The hot KPI routes build plain dicts (shapes documented by response_model) and encode
    # them with orjson: re-validating through pydantic doubled their CPU cost per request.
    return Response(orjson.dumps(body), media_type="application/json")


def kpis_out(values: Mapping[str, KpiValue]) -> dict[str, dict[str, Any]]:
    return {key: v.to_dict() for key, v in values.items()}


def kpi_cell(value: KpiValue) -> dict[str, Any]:
    """A KPI value without its lines (for responses that send the lines once, or not at all)."""
    return {
        "value": value.value,
        "numerator": value.numerator,
        "denominator": value.denominator,
        "grade": value.grade,
    }


def pooled(members: Iterable[SpecialistSums]) -> Sums:
    """The members' sums added per metric: a team's KPIs are graded on its pooled sums."""
    total: dict[str, tuple[float, int]] = {}
    for member in members:
        for metric, (num, den) in member.sums.items():
            old_num, old_den = total.get(metric, (0.0, 0))
            total[metric] = (old_num + num, old_den + den)
    return total
