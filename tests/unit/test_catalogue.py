"""The KPI catalogue (shared.catalogue) and what notify and the exports derive from it."""

from __future__ import annotations

from services.notify.messages import format_line, format_value, kpi_name
from services.notify.rules import kpi_higher_is_better, kpi_unit
from services.scoring.appraisal.exports import kpi_label
from services.scoring.kpi.lines import DEFAULT_LINES, lines_with_overrides
from shared.catalogue import (
    APPRAISED_KEYS,
    CATALOGUE,
    GRADED_KEYS,
    KPI_KEYS,
    LANGS,
    MEASURE_KEYS,
    RATIO_KEYS,
)


def test_every_kpi_is_named_in_every_language() -> None:
    for key in KPI_KEYS:
        kpi = CATALOGUE[key]
        assert kpi.key == key and set(kpi.names) == set(LANGS)
        for names in kpi.names.values():
            assert names.name and names.label and names.short


def test_derived_key_sets() -> None:
    assert tuple(k for k in APPRAISED_KEYS if k != "nps") == GRADED_KEYS
    # The appraisal is the SPEC §1 table; the §3a measures are listed after it.
    assert KPI_KEYS == APPRAISED_KEYS + MEASURE_KEYS
    assert MEASURE_KEYS == ("resolution_time_hours", "first_response_sla_rate", "reopen_rate")
    for key in MEASURE_KEYS:
        kpi = CATALOGUE[key]
        assert not kpi.appraised and not kpi.graded
        assert (kpi.qualified, kpi.excellent, kpi.min_samples) == (None, None, None)
    assert [CATALOGUE[k].higher_is_better for k in MEASURE_KEYS] == [False, True, False]
    assert [CATALOGUE[k].unit for k in MEASURE_KEYS] == ["hours", "ratio", "ratio"]
    assert {k for k in KPI_KEYS if CATALOGUE[k].unit == "ratio"} == RATIO_KEYS
    assert lines_with_overrides({}) == dict(DEFAULT_LINES)


def test_default_lines_follow_the_direction() -> None:
    for key, line in DEFAULT_LINES.items():
        assert line.higher_is_better is CATALOGUE[key].higher_is_better
        if line.qualified is not None and line.excellent is not None:
            better = line.excellent >= line.qualified
            assert better is line.higher_is_better, key


def test_notify_reads_unit_direction_and_name_from_the_catalogue() -> None:
    assert kpi_unit("avg_response_time_hours") == "hours"
    assert kpi_higher_is_better("avg_response_time_hours") is False
    assert kpi_name("followup_rate", "en") == CATALOGUE["followup_rate"].names["en"].name
    # A key outside the catalogue is not guessed from its name: a ratio, higher is better.
    assert kpi_unit("first_reply_hours") == "ratio"
    assert kpi_higher_is_better("first_reply_hours") is True
    assert format_value("first_reply_hours", 0.5, "en") == "50%"
    assert format_line("first_reply_hours", 0.5, "en") == "≥ 50%"


def test_export_labels_add_the_unit_where_the_label_has_none() -> None:
    assert kpi_label("avg_response_time_hours", "en") == "Avg response time (h)"
    assert kpi_label("avg_response_time_hours", "zh-CN") == "平均响应时间(小时)"
    assert kpi_label("nps", "en") == CATALOGUE["nps"].names["en"].label


def test_the_appraisal_exports_stay_on_the_spec_table() -> None:
    from services.scoring.appraisal import exports

    for lang in LANGS:
        head = " | ".join(exports.headers(lang))
        for key in MEASURE_KEYS:
            assert CATALOGUE[key].names[lang].label not in head, (lang, key)
    assert exports.headers("en")[4] == "Customer satisfaction value"
