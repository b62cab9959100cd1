"""Safe exports: no text cell is a formula, none fails its file, numbers stay numbers."""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.scoring.appraisal import exports
from shared.catalogue import APPRAISED_KEYS as KPI_KEYS  # appraisal exports: SPEC §1 only
from shared.spreadsheet import attachment, csv_line, neutralise, xlsx_value
from tests.export_checks import (
    TRIGGERS,
    Leftovers,
    hostile_text,
    not_xml,
    read_csv,
    read_xlsx,
    reference,
    safe_filename,
    xlsx_reference,
)

text = hostile_text()
# KPI values are shares, hours, counts and NPS; Excel keeps 15 significant digits.
number = st.one_of(
    st.none(),
    st.integers(-(10**9), 10**9),
    st.floats(-1e12, 1e12),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, -60.0]),
)


@pytest.mark.parametrize(
    ("value", "csv_field", "xlsx"),
    [
        ("=1+1", '"\'=1+1"', "'=1+1"),
        ("+1", '"\'+1"', "'+1"),
        ("-1", '"\'-1"', "'-1"),
        ("@A1", '"\'@A1"', "'@A1"),
        ("\t=1", '"\'\t=1"', "'\t=1"),
        ("\r=1", '"\'\r=1"', "'\r=1"),
        ('=1+1";=1+1', '"\'=1+1"";=1+1"', "'=1+1\";=1+1"),
        ("\x01=1", '"\x01=1"', "\ufffd=1"),  # CSV keeps a control, XML cannot
        ("\x00=1", '"\ufffd=1"', "\ufffd=1"),
        ("华北", '"华北"', "华北"),
        ("", '""', ""),
        (-0.5, "-0.5", -0.5),  # a negative number is a number, not neutralised text
        (-60, "-60", -60),
        (0.9, "0.9", 0.9),
        (None, '""', None),
        (float("nan"), '""', None),
        (float("-inf"), '""', None),
        (True, '"True"', "True"),
    ],
)
def test_cells(value: Any, csv_field: str, xlsx: Any) -> None:
    assert csv_line([value]) == f"{csv_field}\r\n".encode()
    out = xlsx_value(value)
    assert out == xlsx and type(out) is type(xlsx)


@settings(max_examples=500)
@given(value=text)
def test_text_is_neutralised_and_quoted(value: str) -> None:
    expected = reference(value)
    assert neutralise(value) == expected
    assert not expected.startswith(TRIGGERS)
    # Always quoted: a ; or tab separator (Excel's in some locales) cannot open a cell inside.
    line = csv_line([value])
    assert line == ('"' + expected.replace('"', '""') + '"\r\n').encode("utf-8")
    assert next(csv.reader(io.StringIO(line.decode("utf-8"), newline=""))) == [expected]
    assert xlsx_value(value) == reference(value, not_xml)


@settings(max_examples=300)
@given(name=text, ext=st.sampled_from(["csv", "xlsx"]))
@example(name="华北", ext="csv")
@example(name='../"x"\r\nSet-Cookie: a=b', ext="xlsx")
def test_attachment_header_is_latin1_and_names_the_file(name: str, ext: str) -> None:
    filename = f"appraisal-2026Q3-{name}.{ext}"
    header = attachment(filename)
    header.encode("latin-1")  # what Starlette sends headers as
    safe = safe_filename(filename)
    fallback = "".join(c if c.isascii() else "_" for c in safe)
    if safe.isascii():
        assert header == f'attachment; filename="{safe}"'
    else:
        assert header == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(safe)}"
        assert unquote(header.split("UTF-8''", 1)[1], errors="strict") == safe


def appraisal(ids: tuple[str, str, str, str], values: list[Any]) -> dict[str, Any]:
    sid, name, team, calendar = ids
    return {
        "specialist_id": sid,
        "name": name,
        "team_id": team,
        "quarter": "2026Q3",
        "kpis": {k: {"value": v, "grade": None} for k, v in zip(KPI_KEYS, values, strict=True)},
        "overall_grade": "qualified",
        "incentive": {"actions": []},
        "finalized": False,
        "finalized_at": None,
        "differs": False,
        "calendar": calendar,
    }


async def _each(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


VALUE_COLUMNS = [
    exports.headers("en").index(f"{exports.kpi_label(k, 'en')} value") for k in KPI_KEYS
]
CALENDAR_COLUMN = exports.headers("en").index("Calendar")
rows = st.lists(
    st.tuples(
        st.tuples(text, text, text, text),
        st.lists(number, min_size=len(KPI_KEYS), max_size=len(KPI_KEYS)),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=80, deadline=None)
@given(rows=rows, teams=text)
async def test_exports_of_any_text_succeed_read_back_and_hold_no_formula(
    rows: list[tuple[tuple[str, str, str, str], list[Any]]], teams: str
) -> None:
    items = [appraisal(ids, values) for ids, values in rows]
    raw = b"".join([c async for c in exports.csv_stream(_each(items), "en")])
    table = read_csv(raw)
    assert table[0] == exports.headers("en")
    out = await exports.xlsx_file(_each(items), "en", {"quarter": "2026Q3", "teams": teams})
    data = b"".join([c async for c in exports.file_chunks(out)])
    sheet, summary = read_xlsx(data).worksheets
    assert summary["B2"].value == xlsx_reference(teams) or (
        summary["B2"].value is None and teams == ""
    )
    for i, ((sid, name, team, calendar), values) in enumerate(rows):
        line = table[i + 1]
        assert line[:3] == [reference(sid), reference(name), reference(team)]
        assert line[CALENDAR_COLUMN] == reference(calendar)
        cells = [c for c in sheet[i + 2]]
        for col, original in ((0, sid), (1, name), (2, team), (CALENDAR_COLUMN, calendar)):
            expected = xlsx_reference(original)
            assert (cells[col].value or "") == expected, (col, original)
            assert cells[col].value is None or cells[col].data_type == "s"
        for col, value in zip(VALUE_COLUMNS, values, strict=True):
            finite = value is not None and math.isfinite(value)
            assert line[col] == (repr(value) if finite else ""), (col, value)
            cell = cells[col]
            if finite:
                assert cell.data_type == "n" and math.isclose(cell.value, value, rel_tol=1e-15)
            else:
                assert cell.value is None


# --------------------------------------------------------------------- temporary files


async def test_no_temp_file_after_a_download(temp_files: Leftovers) -> None:
    items = [appraisal(("s", "n", "t", ""), [1.0] * len(KPI_KEYS))] * 50
    out = await exports.xlsx_file(_each(items), "en", {})
    assert b"".join([c async for c in exports.file_chunks(out)]).startswith(b"PK")
    assert out.closed and temp_files() == []


async def test_no_temp_file_after_failing_rows(temp_files: Leftovers) -> None:
    async def failing() -> AsyncIterator[dict[str, Any]]:
        for i in range(50):
            yield appraisal((f"s{i}", "n", "t", ""), [1.0] * len(KPI_KEYS))
        assert temp_files(), "the sheet is being written to a temp file"
        raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError):
        await exports.xlsx_file(failing(), "en", {})
    assert temp_files() == []


async def test_no_temp_file_after_a_cancelled_export(temp_files: Leftovers) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[dict[str, Any]]:
        yield appraisal(("s", "n", "t", ""), [1.0] * len(KPI_KEYS))
        started.set()
        await asyncio.Event().wait()  # the client gives up first
        yield {}

    task = asyncio.ensure_future(exports.xlsx_file(slow(), "en", {}))
    await asyncio.wait_for(started.wait(), 10)
    assert temp_files()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert temp_files() == []


async def test_a_stream_that_never_starts_leaves_no_file(temp_files: Leftovers) -> None:
    items = [appraisal(("s", "n", "t", ""), [1.0] * len(KPI_KEYS))]
    out = await exports.xlsx_file(_each(items), "en", {})
    exports.file_chunks(out)  # the response never starts (the client went away)
    assert temp_files() == []  # the file has no name
    out.close()
