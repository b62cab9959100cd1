"""The JSON-valued settings (KPI_KPI_LINES, KPI_APPRAISAL_RULE, KPI_INCENTIVES) and their errors."""

from __future__ import annotations

import json

import pytest

from shared.settings import SettingsError, load_settings

JSON_SETTINGS = ("kpi_lines", "appraisal_rule", "incentives")


def _load(name: str, raw: str, via_env: bool, monkeypatch: pytest.MonkeyPatch) -> object:
    if via_env:
        monkeypatch.setenv("KPI_" + name.upper(), raw)
        return getattr(load_settings(), name)
    return getattr(load_settings(**{name: raw}), name)


@pytest.mark.parametrize("via_env", [False, True])
@pytest.mark.parametrize("name", JSON_SETTINGS)
@pytest.mark.parametrize("raw", ["", "   ", "{}"])
def test_blank_or_empty_means_no_overrides(
    name: str, raw: str, via_env: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _load(name, raw, via_env, monkeypatch) == {}


@pytest.mark.parametrize("via_env", [False, True])
@pytest.mark.parametrize("name", JSON_SETTINGS)
@pytest.mark.parametrize("raw", ["{not json", '{"a": 1', "nul"])
def test_bad_json_names_the_variable(
    name: str, raw: str, via_env: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(json.JSONDecodeError) as decode:
        json.loads(raw)
    with pytest.raises(SettingsError) as err:
        _load(name, raw, via_env, monkeypatch)
    assert str(err.value) == (
        f"Invalid configuration:\n  KPI_{name.upper()}: Value error, "
        f"must be a JSON object: {decode.value}"
    )


@pytest.mark.parametrize("name", JSON_SETTINGS)
@pytest.mark.parametrize("raw", ["[1]", "1", "null", '"text"'])
def test_json_that_is_not_an_object_is_rejected(
    name: str, raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError) as err:
        _load(name, raw, True, monkeypatch)
    assert str(err.value) == (
        f"Invalid configuration:\n  KPI_{name.upper()}: Input should be a valid dictionary"
    )


def test_each_policy_is_checked_by_its_own_parser() -> None:
    # A rule key is not an incentive key and vice versa: the check must not be swapped.
    from services.scoring.config import ScoringConfig

    rule = '{"excellent_min_count": 2}'
    parsed = ScoringConfig.from_settings(load_settings(appraisal_rule=rule)).appraisal_rule
    assert parsed.excellent_min_count == 2
    with pytest.raises(SettingsError, match=r"^Invalid configuration:\n  KPI_INCENTIVES: "):
        ScoringConfig.from_settings(load_settings(incentives=rule))
    with pytest.raises(SettingsError, match=r"^Invalid configuration:\n  KPI_APPRAISAL_RULE: "):
        ScoringConfig.from_settings(load_settings(appraisal_rule='{"excellent_min_count": 9}'))
    lines = load_settings(kpi_lines='{"resolution_rate": {"qualified": 0.88}}').kpi_lines
    assert lines == {"resolution_rate": {"qualified": 0.88}}


@pytest.mark.parametrize(
    "raw", ["0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "2\x01", "二十四", "8760.5"]
)
def test_sla_hours_must_be_finite_and_positive(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPI_SLA_FIRST_RESPONSE_HOURS", raw)
    with pytest.raises(SettingsError, match=r"KPI_SLA_FIRST_RESPONSE_HOURS: "):
        load_settings()


@pytest.mark.parametrize(("raw", "want"), [("24", 24.0), ("0.25", 0.25), ("8760", 8760.0)])
def test_sla_hours_reach_the_measure(
    raw: str, want: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.scoring.config import ScoringConfig

    monkeypatch.setenv("KPI_SLA_FIRST_RESPONSE_HOURS", raw)
    assert ScoringConfig.from_settings(load_settings()).measure.sla_hours == want
    monkeypatch.delenv("KPI_SLA_FIRST_RESPONSE_HOURS")
    assert load_settings().sla_first_response_hours == 24.0
