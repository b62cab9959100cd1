"""The kpi.scores contract (shared.scores): what scoring's relay writes is what notify reads."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any

import orjson

from services.notify import models as notify_models
from services.notify.handlers.observations import observations
from services.scoring import models as scoring_models
from services.scoring.engine.relay import score_message
from services.scoring.kpi.grading import KpiValue, evaluate_all
from services.scoring.kpi.windows import parse_window
from shared.catalogue import CATALOGUE, KPI_KEYS
from shared.scores import MAX_ID_CHARS, MAX_KPI_CHARS, ScoreSnapshot

# What each KPI of a message carried before it named its direction: the KPI-route fields.
PREVIOUS_FIELDS = tuple(f.name for f in fields(KpiValue))


def _message() -> bytes:
    window = parse_window("qtd", date(2026, 4, 30))
    sums = {"resolution_rate": (17.0, 20), "training_sessions": (2.0, 2), "nps": (3.0, 10)}
    at = datetime(2026, 4, 30, 1, 2, 3, tzinfo=UTC)
    return score_message(
        "s1", "north", window, "UTC", date(2026, 4, 30), at, "events", evaluate_all(sums, window)
    )


def test_each_kpi_keeps_its_fields_and_names_its_direction() -> None:
    body = orjson.loads(_message())
    assert list(body["kpis"]) == list(KPI_KEYS)
    for key, kpi in body["kpis"].items():
        assert list(kpi) == [*PREVIOUS_FIELDS, "higher_is_better"]
        assert kpi["higher_is_better"] is CATALOGUE[key].higher_is_better
    # Counts are written as the integers they are.
    assert b'"numerator":17,"denominator":20,' in _message()


def test_notify_reads_what_scoring_writes() -> None:
    snapshot = ScoreSnapshot.model_validate_json(_message())
    assert snapshot.window.from_ == "2026-04-01" and snapshot.team_id == "north"
    by_kpi = {o.kpi: o for o in observations(snapshot)}
    assert by_kpi["avg_response_time_hours"].higher_is_better is False
    assert by_kpi["resolution_rate"].value == 0.85 and by_kpi["resolution_rate"].samples == 20


def _previous_release(**kpi: Any) -> dict[str, Any]:
    return {
        "specialist_id": "s1",
        "window": {"name": "30d"},
        "computed_at": "2026-04-30T01:02:03.000000Z",
        "kpis": {"avg_response_time_hours": {"value": 30.0, **kpi}},
    }


def test_a_message_without_directions_reads_them_from_the_catalogue() -> None:
    (obs,) = observations(ScoreSnapshot.model_validate(_previous_release()))
    assert obs.higher_is_better is False
    (said,) = observations(ScoreSnapshot.model_validate(_previous_release(higher_is_better=True)))
    assert said.higher_is_better is True


def test_limits_are_the_widths_of_the_columns_that_keep_the_values() -> None:
    assert MAX_ID_CHARS == notify_models.ID_LENGTH == scoring_models.ID_LENGTH
    assert MAX_KPI_CHARS == notify_models.KPI_LENGTH == scoring_models.METRIC_LENGTH
