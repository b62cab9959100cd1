"""Safe file exports: spreadsheet cells that never become formulas or fail, download names."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

from shared.text import scrub

__all__ = [
    "FORMULA_TRIGGERS",
    "Cell",
    "attachment",
    "csv_line",
    "csv_lines",
    "neutralise",
    "xlsx_value",
]

# What an export may be handed: text (from outside, so hostile), numbers, or nothing.
Cell = str | int | float | None

# OWASP "CSV Injection": a cell starting with one of these is read as a formula by Excel,
# LibreOffice or Google Sheets (=HYPERLINK, =WEBSERVICE, DDE through =cmd|...). Ids and names
# come from helpdesk events, i.e. from outside the platform.
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")

# What XML 1.0 (the XLSX format) cannot carry: openpyxl raises IllegalCharacterError on C0
# controls and writes U+FFFE/U+FFFF into a file that does not open; a lone surrogate cannot
# be encoded at all. Tab, LF and CR are legal XML and kept.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def neutralise(text: str) -> str:
    """``text`` as a cell no spreadsheet reads as a formula: a single quote before a trigger.

    NUL and lone surrogates (nothing stored can hold them, UTF-8 cannot encode a surrogate)
    become U+FFFD first, so a cell never fails the file it is in.
    """
    text = scrub(text)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _csv_value(value: object) -> str | int | float:
    # bool is an int to Python but a word to a reader; NaN and infinities have no cell.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else neutralise(_text(value))
    return value if math.isfinite(value) else ""


def csv_line(values: Iterable[object]) -> bytes:
    """One UTF-8 CSV record: numbers bare (a negative KPI value stays a number), text quoted
    and neutralised, so neither a formula trigger nor a ``;`` or tab separator (Excel's in
    some locales) can start a live cell inside it."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow([_csv_value(v) for v in values])
    return buf.getvalue().encode("utf-8")


def csv_lines(rows: Iterable[Iterable[object]]) -> bytes:
    """:func:`csv_line` for many records with one writer (large streamed exports)."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerows([_csv_value(v) for v in values] for values in rows)
    return buf.getvalue().encode("utf-8")


def xlsx_value(value: object) -> Cell:
    """A value for an XLSX cell: a finite number as a number; anything else as text, with
    what XML cannot carry replaced by U+FFFD and then neutralised (write it as a string cell:
    openpyxl also reads "#N/A" and friends as error cells)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None if value is None else neutralise(_NOT_XML.sub("\ufffd", _text(value)))
    return value if math.isfinite(value) else None


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` value for ``filename`` that any HTTP stack can send.

    Headers are latin-1, so a CJK team id in the name used to fail the response. RFC 6266:
    ``filename`` is an ASCII fallback (others ``_``), ``filename*`` (RFC 5987) the UTF-8 name.
    Characters that are not letters, digits, ``-``, ``_`` or ``.`` (path separators, quotes,
    controls) become ``_`` in both.
    """
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in scrub(filename))
    ascii_name = "".join(c if c.isascii() else "_" for c in name)
    if ascii_name == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
