"""The specialists CSV parser: what a spreadsheet writes comes back cell for cell, or is named."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.api.directory_import import MAX_ROWS, ImportRefused, parse_specialists_csv
from services.scoring.directory_writes import CellError
from shared.directory import normalize_alias
from shared.text import id_problem

# Text a spreadsheet may hold in one cell and the id rule keeps: CJK, quotes, commas, the
# formula triggers (= + - @), U+2028; never a control character (refused, tested below).
_CELL = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"))
        | st.sampled_from('",=+-@李娜\u2028'),
        min_size=1,
        max_size=40,
    )
    .map(lambda s: s.strip(" \t"))
    # (a cell of Unicode spaces alone is an empty alias: refused, tested below)
    .filter(lambda s: bool(s.strip()) and id_problem(s) is None)
)


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return ("\ufeff" + out.getvalue()).encode()


def _errors(body: bytes) -> list[CellError]:
    with pytest.raises(ImportRefused) as refused:
        parse_specialists_csv(body)
    return refused.value.errors


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(_CELL, st.none() | _CELL, st.none() | _CELL, st.none() | _CELL),
        max_size=8,
        unique_by=lambda r: r[0],
    ).filter(lambda rows: len({r[3] for r in rows if r[3]}) == len([r for r in rows if r[3]]))
)
def test_what_a_spreadsheet_writes_is_read_back_exactly(
    rows: list[tuple[str, str | None, str | None, str | None]],
) -> None:
    header = ["id", "Name", "team_id", "aliases.zendesk"]
    body = _csv([header, *[[c or "" for c in r] for r in rows]])
    plan = parse_specialists_csv(body)
    assert (plan.has_name, plan.has_team, plan.alias_kinds) == (True, True, ("zendesk",))
    got = [(r.id, r.name, r.team_id, r.aliases["zendesk"]) for r in plan.rows]
    assert got == [(i, n, t, normalize_alias("zendesk", z) if z else None) for i, n, t, z in rows]
    assert [r.row for r in plan.rows] == list(range(2, len(rows) + 2))


def test_absent_columns_are_not_stated_and_blank_lines_are_skipped() -> None:
    plan = parse_specialists_csv(b"id,aliases.email\r\n\r\nli.na, Li.Na@Example.COM \r\n")
    assert (plan.has_name, plan.has_team, plan.alias_kinds) == (False, False, ("email",))
    (row,) = plan.rows
    assert (row.row, row.id, row.aliases) == (3, "li.na", {"email": "li.na@example.com"})


@pytest.mark.parametrize(
    ("body", "row", "column", "words"),
    [
        (b"", 1, None, "empty"),
        (b"\xff\xfeid\n", 1, None, "not UTF-8"),
        (b"name\nx\n", 1, "id", "required"),
        (b"id,nom\nx,y\n", 1, "#2", "unknown column 'nom'"),
        (b"id,ID\nx,y\n", 1, "id", "twice"),
        (b"id,name\n,Li\n", 2, "id", "required"),
        (b"id,name\nx\n", 2, None, "1 cells, the header has 2"),
        (b'id\n"open\n', 2, None, "not valid CSV"),
        (b"id,name\nx,a\x00b\n", 2, "name", "U+0000 (NUL)"),
        (b"id,name\nx,a\x1bb\n", 2, "name", "control character U+001B"),
        (b"id\n" + b"x" * 129 + b"\n", 2, "id", "at most 128 characters"),
        (b"id,name\nx," + "李".encode() * 201 + b"\n", 2, "name", "at most 200 characters"),
        (b"id,aliases.email\nx," + b"a" * 321 + b"\n", 2, "aliases.email", "at most 320"),
        (b"id\nx\ny\nx\n", 4, "id", "already on row 2"),
        (b"id,aliases.email\nx,A@b.c\ny,a@B.c\n", 3, "aliases.email", "already on row 2"),
        ("id,aliases.zendesk\nx,\u3000\n".encode(), 2, "aliases.zendesk", "at least 1 character"),
    ],
)
def test_bad_input_names_the_row_and_column(
    body: bytes, row: int, column: str | None, words: str
) -> None:
    first = _errors(body)[0]
    assert (first.row, first.column) == (row, column), first
    assert words in first.msg, first.msg
    assert first.text().startswith(f"row {row}")


def test_every_bad_cell_is_reported_not_only_the_first() -> None:
    errors = _errors(b"id,name,team_id\nx,\x01,ok\n,fine,\x02\ny,ok,ok\n")
    assert [(e.row, e.column) for e in errors] == [(2, "name"), (3, "id"), (3, "team_id")]


def test_a_huge_file_is_cut_at_the_row_limit() -> None:
    body = b"id\n" + b"".join(b"s%d\n" % i for i in range(MAX_ROWS + 5))
    (error,) = _errors(body)
    assert (error.row, error.column) == (MAX_ROWS + 2, None) and "split the file" in error.msg


def test_formula_prefixes_and_cjk_are_kept_as_written() -> None:
    plan = parse_specialists_csv('id,name\n=1+1,"@SUM(A1) 李娜, ""x"""\n'.encode())
    assert [(r.id, r.name) for r in plan.rows] == [("=1+1", '@SUM(A1) 李娜, "x"')]
