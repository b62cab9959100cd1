"""A minimal constant-memory XLSX writer: rows go straight into the zipped sheet XML.

openpyxl's write-only mode serialises each cell through an element tree (~45 µs a cell on
this machine: a 1,000,000-ticket export took minutes); here a row is one string join. Text
cells are inline strings, so nothing grows with the row count but the output file.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Iterable, Sequence
from typing import IO, Any, Final
from xml.sax.saxutils import escape

from shared.spreadsheet import xlsx_value

# An XLSX sheet holds 1,048,576 rows: the header and this many more, then the next sheet.
SHEET_ROWS: Final = 1_048_575
_EPOCH: Final = dt.datetime(1899, 12, 30)  # Excel's day 0 (1900 date system, as Excel writes)
# "_x0041_" in a string is an escape to Excel (ECMA-376 ST_Xstring): its "_" is escaped.
_XSTRING_ESCAPE: Final = re.compile(r"_(x[0-9A-Fa-f]{4}_)")
_NS: Final = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_NS_R: Final = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
_HEAD: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_REL: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CT: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml"
# Cell styles (cellXfs): 0 plain, 1 bold (header), 2 date and time.
_STYLES: Final = (
    f"{_HEAD}<styleSheet {_NS}>"
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
    "</cellStyles></styleSheet>"
)


def column_letters(n: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    out = ""
    n += 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _text(value: str) -> str:
    return escape(_XSTRING_ESCAPE.sub(r"_x005F_\1", value))


class XlsxStream:
    """Writes rows of str / int / float / naive datetime / None into ``out`` as an XLSX file.

    Text goes through ``xlsx_value`` (no formula, nothing XML cannot carry). Call
    :meth:`close` to finish the file; sheets beyond the first are named "``name`` 2", ....
    """

    def __init__(self, out: IO[bytes], sheet_name: str, headers: Sequence[str]) -> None:
        self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        self._name = sheet_name
        self._headers = list(headers)
        self._cols = [column_letters(i) for i in range(max(len(headers), 1))]
        self._sheets = 0
        self._part: IO[bytes] | None = None
        self._row = 0
        self._new_sheet()

    def _new_sheet(self) -> None:
        self._end_sheet()
        self._sheets += 1
        self._part = self._zip.open(f"xl/worksheets/sheet{self._sheets}.xml", "w", force_zip64=True)
        self._row = 0
        pane = (
            '<pane xSplit="1" ySplit="1" topLeftCell="B2" activePane="bottomRight" state="frozen"/>'
        )
        self._write(
            f'{_HEAD}<worksheet {_NS} {_NS_R}><sheetViews><sheetView workbookViewId="0">'
            f"{pane}</sheetView></sheetViews><sheetData>"
        )
        self._append(self._headers, style=1)

    def _end_sheet(self) -> None:
        if self._part is not None:
            self._write("</sheetData></worksheet>")
            self._part.close()
            self._part = None

    def _write(self, text: str) -> None:
        assert self._part is not None
        self._part.write(text.encode("utf-8"))

    def _cells(self, values: Sequence[Any], r: int, style: int) -> str:
        out = [f'<row r="{r}">']
        s = f' s="{style}"' if style else ""
        for col, value in zip(self._cols, values, strict=False):
            if isinstance(value, dt.datetime):
                days = (value - _EPOCH).total_seconds() / 86400.0
                out.append(f'<c r="{col}{r}" s="2"><v>{days!r}</v></c>')
                continue
            cell = xlsx_value(value)
            if cell is None or cell == "":
                continue  # a blank cell
            if isinstance(cell, str):
                out.append(
                    f'<c r="{col}{r}"{s} t="inlineStr"><is><t xml:space="preserve">'
                    f"{_text(cell)}</t></is></c>"
                )
            else:
                out.append(f'<c r="{col}{r}"{s}><v>{cell!r}</v></c>')
        out.append("</row>")
        return "".join(out)

    def _append(self, values: Sequence[Any], style: int = 0) -> None:
        self._row += 1
        self._write(self._cells(values, self._row, style))

    def append_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        """Add data rows (a new sheet, with the header again, after SHEET_ROWS)."""
        chunk: list[str] = []
        for values in rows:
            if self._row > SHEET_ROWS:
                self._write("".join(chunk))
                chunk = []
                self._new_sheet()
            self._row += 1
            chunk.append(self._cells(values, self._row, 0))
        self._write("".join(chunk))

    def close(self) -> None:
        """Finish the sheets and write the workbook's other parts (not the output file)."""
        self._end_sheet()
        n = self._sheets
        names = [self._name if i == 1 else f"{self._name} {i}" for i in range(1, n + 1)]
        sheets = "".join(
            f'<sheet name="{escape(name, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>'
            for i, name in enumerate(names, 1)
        )
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, n + 1)
        )
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_CT}.worksheet+xml"/>'
            for i in range(1, n + 1)
        )
        parts = {
            "[Content_Types].xml": (
                f'{_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                'content-types"><Default Extension="rels" ContentType="application/'
                'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
                'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" '
                f'ContentType="{_CT}.sheet.main+xml"/><Override PartName="/xl/styles.xml" '
                f'ContentType="{_CT}.styles+xml"/>{overrides}</Types>'
            ),
            "_rels/.rels": (
                f'{_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                f'relationships"><Relationship Id="rId1" Type="{_REL}/officeDocument" '
                'Target="xl/workbook.xml"/></Relationships>'
            ),
            "xl/workbook.xml": (
                f"{_HEAD}<workbook {_NS} {_NS_R}><sheets>{sheets}</sheets></workbook>"
            ),
            "xl/_rels/workbook.xml.rels": (
                f'{_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                f'relationships">{rels}<Relationship Id="rId{n + 1}" Type="{_REL}/styles" '
                'Target="styles.xml"/></Relationships>'
            ),
            "xl/styles.xml": _STYLES,
        }
        for name, text in parts.items():
            self._zip.writestr(name, text)
        self._zip.close()

    def abort(self) -> None:
        """Stop without finishing (the output is then not a workbook)."""
        try:
            if self._part is not None:
                self._part.close()
        finally:
            self._zip.close()
