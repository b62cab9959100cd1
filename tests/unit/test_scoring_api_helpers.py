"""Scoring API helpers without servers: KPI enum, cursors, ranking order, pooling, OpenAPI."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi import HTTPException
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.api.kpis import decode_cursor, encode_cursor, sort_key
from services.scoring.api.render import pooled
from services.scoring.api.schemas import KpiKey
from services.scoring.api.scope import visible_teams
from services.scoring.app import build_app
from services.scoring.db import asyncpg_dsn
from services.scoring.kpi.grading import KpiValue
from services.scoring.queries import SpecialistRow, SpecialistSums
from shared.auth import Principal, Role
from shared.catalogue import KPI_KEYS


def test_kpi_enum_matches_catalogue() -> None:
    assert [k.value for k in KpiKey] == list(KPI_KEYS)


@given(
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
    # Sources come from kpi_facts: storable text (no NUL, no lone surrogate).
    st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=200),
)
def test_cursor_round_trips(day: dt.date, source: str) -> None:
    cursor = encode_cursor(day, source)
    assert cursor.isascii() and "=" not in cursor
    assert decode_cursor(cursor) == (day, source)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x",
        "!!!",
        encode_cursor(dt.date(2026, 1, 1), "a")[:-3],
        # PostgreSQL would refuse these as a query parameter (a 500 before).
        encode_cursor(dt.date(2026, 1, 1), "ticket:a\x00"),
        encode_cursor(dt.date(2026, 1, 1), "ticket:\ud800"),
    ],
)
def test_bad_cursor_is_422_naming_cursor(bad: str) -> None:
    with pytest.raises(HTTPException) as err:
        decode_cursor(bad)
    assert err.value.status_code == 422
    detail: list[dict[str, object]] = err.value.detail  # type: ignore[assignment]
    assert detail[0]["loc"] == ["query", "cursor"]


def _value(v: float | None) -> KpiValue:
    return KpiValue(v, v, 1, None, None, None, None)


@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=30))
def test_sort_key_best_first_nulls_last(values: list[float | None]) -> None:
    for kpi, reverse in (("resolution_rate", True), ("avg_response_time_hours", False)):
        ranked = sorted(values, key=lambda v: sort_key(kpi, _value(v)))
        present = [v for v in ranked if v is not None]
        assert present == sorted(present, reverse=reverse)
        assert ranked[len(present) :] == [None] * (len(ranked) - len(present))


def test_pooled_sums_members() -> None:
    a = SpecialistSums(SpecialistRow("a", None, "t"), {"nps": (3.0, 4), "resolution_rate": (1, 2)})
    b = SpecialistSums(SpecialistRow("b", None, "t"), {"nps": (-1.0, 2)})
    assert pooled([a, b]) == {"nps": (2.0, 6), "resolution_rate": (1.0, 2)}
    assert pooled([]) == {}


def test_visible_teams_scoping() -> None:
    admin = Principal(Role.ADMIN, "root")
    sup = Principal(Role.SUPERVISOR, "ann", frozenset({"north", "east"}))
    assert visible_teams(admin, None) is None
    assert visible_teams(admin, "any") == ["any"]
    assert visible_teams(sup, None) == ["east", "north"]
    assert visible_teams(sup, "north") == ["north"]
    with pytest.raises(HTTPException) as err:
        visible_teams(sup, "south")
    assert err.value.status_code == 404
    assert err.value.detail == "unknown team 'south'"


def test_openapi_documents_exact_shapes() -> None:
    schema = build_app().openapi()
    paths = schema["paths"]
    for path in (
        "/v1/specialists/{specialist_id}/kpis",
        "/v1/teams/{team_id}/kpis",
        "/v1/leaderboard",
        "/v1/specialists/{specialist_id}/kpis/{kpi}/history",
        "/v1/specialists/{specialist_id}/kpis/{kpi}/events",
        "/v1/teams",
        "/v1/specialists",
    ):
        assert "get" in paths[path], path
    assert "put" in paths["/v1/teams/{team_id}"]
    assert "put" in paths["/v1/specialists/{specialist_id}"]
    comps = schema["components"]["schemas"]
    assert set(comps["WindowOut"]["properties"]) == {"name", "from", "to", "timezone"}
    assert set(comps["History"]["properties"]) == {"specialist_id", "kpi", "from", "to", "points"}
    assert set(comps["KpiOut"]["properties"]) == {
        "value",
        "numerator",
        "denominator",
        "grade",
        "qualified",
        "excellent",
        "min_samples",
    }
    assert set(comps["FactsPage"]["properties"]) == {"items", "next_cursor", "kept_from"}


def test_asyncpg_dsn_keeps_credentials_and_options() -> None:
    url = "postgresql+asyncpg://u:p%40ss@db.example:5433/kpi?ssl=require"
    assert asyncpg_dsn(url) == "postgresql://u:p%40ss@db.example:5433/kpi?ssl=require"
