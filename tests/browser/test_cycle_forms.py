"""The cycle screens' form helpers (views/cycle_common.js) in headless Chromium, no services:
error answers of every shape read alike, their field errors land next to the inputs they name,
and the quarter arithmetic matches a reference."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# An ApiError with exactly the given own properties, whichever api.js built it: main's
# (status, detail as text or FastAPI's list), the problem+json one (detail text, errors) or
# one that keeps the whole answer (body).
READ = """async ([props]) => {
  const { ApiError } = await import("/js/api.js");
  const { problemOf, failureText } = await import("/js/views/cycle_common.js");
  const err = Object.assign(Object.create(ApiError.prototype), props);
  const p = problemOf(err);
  return { ...p, text: failureText(p) };
}"""

FORM = """<form id="f" novalidate>
  <div class="field"><label for="held">Held on</label>
    <input id="held" data-field="held_on"></div>
  <div class="field"><label for="people">People</label>
    <input id="people" data-field="participants" aria-describedby="people-hint">
    <small id="people-hint">hint</small></div>
  <fieldset data-field="goals"><legend>Goals</legend>
    <fieldset data-field="goals[0]"><legend>Goal 1</legend>
      <div class="field"><label for="k0">KPI</label>
        <select id="k0" data-field="goals[0].kpi"></select></div>
      <div class="field"><label for="t0">Target</label>
        <input id="t0" data-field="goals[0].target"></div>
    </fieldset></fieldset>
  <p class="form-error" role="alert"></p></form>"""

SHOW = """async ([html, fields, detail]) => {
  const { showErrors, clearErrors } = await import("/js/views/cycle_common.js");
  document.body.innerHTML = html;
  const form = document.querySelector("#f");
  const line = showErrors(form, { status: 422, detail, fields });
  const state = (el) => ({ id: el.id || el.dataset.field, invalid: el.getAttribute("aria-invalid"),
    described: el.getAttribute("aria-describedby"),
    msg: el.closest(".field")?.querySelector(":scope > .field-msg")?.textContent ?? null });
  const marked = [...form.querySelectorAll("[data-field]")].map(state);
  const focused = document.activeElement?.id || null;
  clearErrors(form);
  const cleared = [...form.querySelectorAll("[data-field]")].map(state);
  return { line, marked, focused, cleared, left: form.querySelectorAll(".field-msg").length };
}"""


def read(page: Any, **props: Any) -> dict[str, Any]:
    got: dict[str, Any] = page.evaluate(READ, [props])
    return got


def test_every_error_shape_reads_alike(static_page: Any) -> None:
    msg = "a held meeting needs held_on (the date it was held)"
    conflict = "a meeting cannot go from 'held' to 'scheduled'"
    old_text = read(static_page, status=409, detail=conflict)
    assert old_text["fields"] == [] and old_text["text"].endswith("to 'scheduled'"), old_text
    assert old_text["text"].startswith("Not possible now: "), old_text

    old_list = read(
        static_page,
        status=422,
        detail=[{"loc": ["body", "held_on"], "msg": msg, "type": "value_error"}],
    )
    assert old_list["fields"] == [{"field": "held_on", "msg": msg}], old_list
    assert old_list["detail"] == "" and "held_on: " + msg in old_list["text"], old_list

    problem = {"title": "Request validation failed", "status": 422, "detail": f"held_on: {msg}",
               "errors": [{"loc": ["body", "held_on"], "field": "held_on", "msg": msg,
                           "type": "value_error"}]}  # fmt: skip
    new = read(static_page, status=422, detail=problem["detail"], errors=problem["errors"])
    assert new["fields"] == [{"field": "held_on", "msg": msg}], new
    assert new["detail"] == f"held_on: {msg}" and new["text"].startswith(new["detail"]), new

    # An ApiError that keeps the whole answer; fields from loc when `field` is absent.
    nested = {"title": "Unprocessable", "status": 422, "detail": "2 fields",
              "errors": [{"loc": ["body", "goals", 0, "target"], "msg": "must be >= 0"},
                         {"loc": ["body"], "msg": "whole body"}]}  # fmt: skip
    kept = read(static_page, status=422, detail="2 fields", body=nested)
    assert kept["fields"] == [
        {"field": "goals[0].target", "msg": "must be >= 0"},
        {"field": "", "msg": "whole body"},
    ], kept

    # A problem without detail says its title; other statuses say what failed.
    titled = read(static_page, status=500, detail=None, body={"title": "Internal error"})
    assert titled["text"] == "Could not save: Internal error", titled


def test_field_errors_land_next_to_the_inputs_they_name(static_page: Any) -> None:
    fields = [
        {"field": "participants[2]", "msg": "too long"},  # inside participants
        {"field": "goals[0].target", "msg": "must be >= 0"},  # exactly one input
        {"field": "goals[1]", "msg": "bad goal"},  # no such row: the goals set
        {"field": "nowhere", "msg": "odd"},  # no input: the message line
    ]
    out = static_page.evaluate(SHOW, [FORM, fields, ""])
    by_id = {m["id"]: m for m in out["marked"]}
    assert by_id["people"]["invalid"] == "true" and by_id["people"]["msg"] == "too long", out
    assert by_id["people"]["described"] == "people-hint people-msg", out  # the hint stays
    assert by_id["t0"]["invalid"] == "true" and by_id["t0"]["msg"] == "must be >= 0", out
    assert by_id["goals"]["invalid"] == "true", out
    assert by_id["held"]["invalid"] is None and by_id["k0"]["invalid"] is None, out
    assert by_id["goals[0]"]["invalid"] is None, out
    assert out["focused"] == "people", out  # the first field named
    assert out["line"] == "Please correct the marked fields. · nowhere: odd", out
    # Cleared: no marks, no messages, descriptions as they were.
    assert all(m["invalid"] is None for m in out["cleared"]) and out["left"] == 0, out
    assert {m["id"]: m["described"] for m in out["cleared"]}["people"] == "people-hint", out


def ref_shift(q: str, by: int) -> str:
    year, n = int(q[:4]), int(q[5])
    index = year * 4 + n - 1 + by
    return f"{index // 4}Q{index % 4 + 1}"


def ref_field(loc: list[str | int]) -> str:
    """The dotted name of a FastAPI loc without its location (the problem+json rule)."""
    where = {"body", "query", "path", "header", "cookie"}
    if len(loc) > 1 and loc[0] in where:
        loc = loc[1:]
    elif not loc or (len(loc) == 1 and loc[0] in where):
        return ""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


PURE = """async ([quarters, shifts, today, locs]) => {
  const c = await import("/js/views/cycle_common.js");
  return { shifted: quarters.map((q, i) => c.shiftQuarter(q, shifts[i])),
           review: c.reviewQuarter(today), next: quarters.map(c.nextQuarter),
           fields: locs.map(c.fieldName) };
}"""

quarter = st.builds(lambda y, n: f"{y}Q{n}", st.integers(1000, 9000), st.integers(1, 4))
loc_part = st.one_of(
    st.sampled_from(["body", "query", "goals", "kpi"]),
    st.integers(0, 30),
    st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=6),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cases=st.lists(st.tuples(quarter, st.integers(-20, 20)), min_size=1, max_size=8),
    today=st.dates(),
    locs=st.lists(st.lists(loc_part, max_size=5), max_size=6),
)
@example(cases=[("2026Q1", -1), ("2026Q4", 1)], today=dt.date(2026, 1, 1),
         locs=[["body"], ["body", "goals", 0, "kpi"], ["query", "quarter"], [0]])  # fmt: skip
def test_quarters_and_field_names_match_the_reference(
    static_page: Any, cases: list[tuple[str, int]], today: dt.date, locs: list[list[str | int]]
) -> None:
    if today.year < 1000:
        today = today.replace(year=1000 + today.year)
    quarters = [q for q, _ in cases]
    shifts = [s for _, s in cases]
    out = static_page.evaluate(PURE, [quarters, shifts, today.isoformat(), locs])
    assert out["shifted"] == [ref_shift(q, s) for q, s in cases]
    assert out["next"] == [ref_shift(q, 1) for q in quarters]
    assert out["review"] == ref_shift(f"{today.year}Q{(today.month - 1) // 3 + 1}", -1)
    assert out["fields"] == [ref_field(loc) for loc in locs]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_cycle_string_has_both_languages(static_page: Any, lang: str) -> None:
    keys = static_page.evaluate("async () => (await import('/js/views/cycle_i18n.js')).STRING_KEYS")
    assert sorted(keys[lang]) == sorted(keys["en"]), set(keys[lang]) ^ set(keys["en"])
