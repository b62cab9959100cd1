"""The SPEC §3a measures alert only where KPI_KPI_LINES sets lines: scoring's kpi.scores
message (relay) read by notify's state machine, end to end without servers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.notify.handlers.observations import observations
from services.notify.rules import RuleConfig, decide, is_recovered
from services.scoring.engine.relay import score_message
from services.scoring.kpi.grading import evaluate_all
from services.scoring.kpi.lines import DEFAULT_LINES, lines_with_overrides
from services.scoring.kpi.windows import parse_window
from shared.catalogue import (
    FIRST_RESPONSE_SLA_RATE,
    MEASURE_KEYS,
    REOPEN_RATE,
    RESOLUTION_TIME_HOURS,
)
from shared.scores import ScoreSnapshot

AS_OF = date(2026, 5, 31)
AT = datetime(2026, 5, 31, 12, tzinfo=UTC)
# Bad on every measure: 50 h to resolve, 2 of 20 first responses within the SLA, half reopened.
BAD = {
    RESOLUTION_TIME_HOURS: (1000.0, 20),
    FIRST_RESPONSE_SLA_RATE: (2.0, 20),
    REOPEN_RATE: (10.0, 20),
}


def firing(lines: object, sums: dict[str, tuple[float, int]] = BAD) -> dict[str, str | None]:
    """Per measure: the notification notify would send for this specialist's window."""
    window = parse_window("30d", AS_OF)
    values = evaluate_all(sums, window, lines)  # type: ignore[arg-type]
    raw = score_message("s-1", "t-1", window, "UTC", AS_OF, AT, "event", values)
    out: dict[str, str | None] = {}
    for o in observations(ScoreSnapshot.model_validate_json(raw)):
        if o.kpi in MEASURE_KEYS:
            out[o.kpi] = decide(None, o, AT, RuleConfig(), False).notify
    return out


def test_no_lines_no_alert() -> None:
    assert firing(DEFAULT_LINES) == dict.fromkeys(MEASURE_KEYS)


def test_lines_set_for_one_measure_alert_for_that_one_only() -> None:
    lines = lines_with_overrides({REOPEN_RATE: {"qualified": 0.2, "min_samples": 10}})
    assert firing(lines) == {
        RESOLUTION_TIME_HOURS: None,
        FIRST_RESPONSE_SLA_RATE: None,
        REOPEN_RATE: "firing",
    }


@pytest.mark.parametrize(
    ("key", "line", "good"),
    [
        (RESOLUTION_TIME_HOURS, 48.0, (400.0, 20)),  # lower is better: 20 h
        (FIRST_RESPONSE_SLA_RATE, 0.9, (19.0, 20)),  # higher is better: 95 %
        (REOPEN_RATE, 0.2, (1.0, 20)),  # lower is better: 5 %
    ],
)
def test_each_measure_fires_in_its_direction(
    key: str, line: float, good: tuple[float, int]
) -> None:
    lines = lines_with_overrides({key: {"qualified": line}})
    assert firing(lines)[key] == "firing"
    assert firing(lines, {**BAD, key: good})[key] is None
    # Recovery follows the direction too (the hysteresis margin is on the good side).
    window = parse_window("30d", AS_OF)
    value = evaluate_all({key: good}, window, lines)[key]
    raw = score_message("s-1", None, window, "UTC", AS_OF, AT, "event", {key: value})
    (obs,) = observations(ScoreSnapshot.model_validate_json(raw))
    assert is_recovered(obs, RuleConfig())


def test_too_few_samples_never_fire() -> None:
    lines = lines_with_overrides({REOPEN_RATE: {"qualified": 0.2, "min_samples": 50}})
    assert firing(lines)[REOPEN_RATE] is None
