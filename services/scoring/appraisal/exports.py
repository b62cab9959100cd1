"""CSV and XLSX exports of a quarter's appraisals and their cycle, zh-CN / en headers."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final, Literal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from services.scoring.appraisal.cycle import action_labels
from services.scoring.appraisal.domain import ACTION_LABELS, OVERALL_GRADES
from shared.catalogue import APPRAISED_KEYS, CATALOGUE, GRADED_KEYS
from shared.spreadsheet import csv_line, xlsx_value

Lang = Literal["zh-CN", "en"]
LANGS: Final = ("zh-CN", "en")
BOM: Final = "\ufeff".encode()  # lets Excel detect UTF-8 and show Chinese correctly
CHUNK: Final = 64 * 1024

# Export columns name the unit a value is counted in where the label alone does not say.
_UNIT_SUFFIXES: Final[Mapping[str, Mapping[str, str]]] = {
    "hours": {"en": " (h)", "zh-CN": "(小时)"},
}
GRADE_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "excellent": {"en": "excellent", "zh-CN": "优秀"},
    "qualified": {"en": "qualified", "zh-CN": "合格"},
    "unqualified": {"en": "unqualified", "zh-CN": "不合格"},
    "insufficient_data": {"en": "insufficient data", "zh-CN": "数据不足"},
}
GRADE_FILLS: Final[Mapping[str, str]] = {
    "excellent": "C6EFCE",  # green
    "qualified": "DDEBF7",  # light blue
    "unqualified": "FFC7CE",  # red
    "insufficient_data": "E7E6E6",  # grey
}
_WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "specialist_id": {"en": "Specialist ID", "zh-CN": "专员编号"},
    "name": {"en": "Name", "zh-CN": "姓名"},
    "team_id": {"en": "Team", "zh-CN": "团队"},
    "quarter": {"en": "Quarter", "zh-CN": "季度"},
    "value": {"en": "value", "zh-CN": "数值"},
    "grade": {"en": "grade", "zh-CN": "等级"},
    "overall_grade": {"en": "Overall grade", "zh-CN": "综合等级"},
    "incentive": {"en": "Suggested incentive", "zh-CN": "建议激励"},
    "finalized": {"en": "Finalised", "zh-CN": "已定稿"},
    "finalized_at": {"en": "Finalised at", "zh-CN": "定稿时间"},
    "differs": {"en": "Live differs", "zh-CN": "与实时数据不一致"},
    "calendar": {"en": "Calendar", "zh-CN": "工作日历"},
    "provisional": {"en": "Provisional", "zh-CN": "暂定"},
    "meeting_status": {"en": "Feedback meeting", "zh-CN": "反馈面谈"},
    "decision": {"en": "Decision taken", "zh-CN": "激励决定"},
    "decision_amount": {"en": "Decision amount", "zh-CN": "决定金额"},
    "decision_level": {"en": "Decision level", "zh-CN": "决定级别"},
    "decided_by": {"en": "Decided by", "zh-CN": "决定人"},
    "decided_at": {"en": "Decided at", "zh-CN": "决定时间"},
    "acknowledged_at": {"en": "Acknowledged at", "zh-CN": "专员确认时间"},
    "yes": {"en": "yes", "zh-CN": "是"},
    "no": {"en": "no", "zh-CN": "否"},
    "sheet": {"en": "Appraisal", "zh-CN": "季度考核"},
    "summary": {"en": "Summary", "zh-CN": "汇总"},
    "total": {"en": "Specialists", "zh-CN": "专员人数"},
    "teams": {"en": "Teams", "zh-CN": "团队"},
    "all": {"en": "all", "zh-CN": "全部"},
    "kpi": {"en": "KPI", "zh-CN": "指标"},
}


MEETING_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "none": {"en": "none", "zh-CN": "未安排"},
    "scheduled": {"en": "scheduled", "zh-CN": "已安排"},
    "held": {"en": "held", "zh-CN": "已面谈"},
    "cancelled": {"en": "cancelled", "zh-CN": "已取消"},
}
# The cycle's columns, after the appraisal's own.
CYCLE_COLUMNS: Final = (
    "provisional",
    "meeting_status",
    "decision",
    "decision_amount",
    "decision_level",
    "decided_by",
    "decided_at",
    "acknowledged_at",
)


def word(key: str, lang: str) -> str:
    return _WORDS[key][lang]


def kpi_label(key: str, lang: str) -> str:
    """The KPI's column label: its catalogue label, with the unit where it has one."""
    kpi = CATALOGUE[key]
    return kpi.names[lang].label + _UNIT_SUFFIXES.get(kpi.unit, {}).get(lang, "")


def grade_label(grade: str | None, lang: str) -> str:
    return "" if grade is None else GRADE_LABELS.get(grade, {}).get(lang, grade)


def headers(lang: str) -> list[str]:
    """Column headers in ``lang``: identity, value (and grade) per KPI, overall, status."""
    out = [word(k, lang) for k in ("specialist_id", "name", "team_id", "quarter")]
    for key in APPRAISED_KEYS:
        label = kpi_label(key, lang)
        sep = "" if lang == "zh-CN" else " "
        out.append(f"{label}{sep}{word('value', lang)}")
        if CATALOGUE[key].graded:
            out.append(f"{label}{sep}{word('grade', lang)}")
    out += [
        word(k, lang)
        for k in ("overall_grade", "incentive", "finalized", "finalized_at", "differs", "calendar")
    ]
    out += [word(k, lang) for k in CYCLE_COLUMNS]
    return out


def _when(value: Any) -> str:
    return "" if value is None else str(value)


def cycle_cells(appraisal: Mapping[str, Any], lang: str) -> list[Any]:
    """The cycle's columns of a row: provisional, meeting status, the decision taken (type,
    amount, level, by, at) and when the specialist acknowledged."""
    decision = appraisal.get("decision") or {}
    meeting = str(appraisal.get("meeting_status") or "none")
    kind = decision.get("type")
    return [
        word("yes" if appraisal.get("provisional") else "no", lang),
        MEETING_LABELS.get(meeting, {}).get(lang, meeting),
        "" if kind is None else action_labels(str(kind))[lang],
        decision.get("amount"),
        decision.get("level") or "",
        decision.get("decided_by") or "",
        _when(decision.get("decided_at")),
        _when(appraisal.get("acknowledged_at")),
    ]


def row(appraisal: Mapping[str, Any], lang: str) -> list[Any]:
    """One specialist's row: the official (frozen when finalised) values, typed for XLSX."""
    kpis = appraisal.get("kpis") or {}
    out: list[Any] = [
        appraisal["specialist_id"],
        appraisal.get("name") or "",
        appraisal.get("team_id") or "",
        appraisal["quarter"],
    ]
    for key in APPRAISED_KEYS:
        value = kpis.get(key) or {}
        out.append(value.get("value"))
        if CATALOGUE[key].graded:
            out.append(grade_label(value.get("grade"), lang))
    actions = (appraisal.get("incentive") or {}).get("actions") or []
    finalized_at = appraisal.get("finalized_at")
    out += [
        grade_label(appraisal.get("overall_grade"), lang),
        "; ".join(ACTION_LABELS.get(a, {}).get(lang, a) for a in actions),
        word("yes" if appraisal.get("finalized") else "no", lang),
        "" if finalized_at is None else str(finalized_at),
        word("yes" if appraisal.get("differs") else "no", lang),
        appraisal.get("calendar") or "",
        *cycle_cells(appraisal, lang),
    ]
    return out


def _grade_columns() -> set[int]:
    """Indexes of the grade columns (per-KPI and overall) in :func:`row`."""
    cols: set[int] = set()
    i = 4
    for key in APPRAISED_KEYS:
        i += 1
        if CATALOGUE[key].graded:
            cols.add(i)
            i += 1
    cols.add(i)  # overall grade
    return cols


GRADE_COLUMNS: Final = frozenset(_grade_columns())


@dataclass
class Tally:
    """Grade counts for the summary sheet, filled while rows stream out."""

    overall: Counter[str] = field(default_factory=Counter)
    per_kpi: dict[str, Counter[str]] = field(default_factory=dict)
    total: int = 0

    def add(self, appraisal: Mapping[str, Any]) -> None:
        self.total += 1
        self.overall[str(appraisal.get("overall_grade"))] += 1
        for key, value in (appraisal.get("kpis") or {}).items():
            grade = (value or {}).get("grade")
            if grade is not None:
                self.per_kpi.setdefault(key, Counter())[grade] += 1


async def csv_stream(appraisals: AsyncIterator[dict[str, Any]], lang: str) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a BOM, one line per specialist, flushed as the rows are computed."""
    yield BOM + csv_line(headers(lang))
    batch: list[bytes] = []
    async for appraisal in appraisals:
        batch.append(csv_line(row(appraisal, lang)))
        if len(batch) >= 200:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


def _fill(color: str) -> PatternFill:
    return PatternFill(start_color=color, end_color=color, fill_type="solid")


_FILLS: Final = {grade: _fill(color) for grade, color in GRADE_FILLS.items()}
_BY_LABEL: Final = {GRADE_LABELS[g][lang]: g for g in GRADE_LABELS for lang in LANGS}


def _cells(ws: WriteOnlyWorksheet, values: list[Any], bold: bool = False) -> list[Any]:
    """Every cell of a row, made safe by ``xlsx_value``; text is always a string cell."""
    out: list[Any] = []
    for i, value in enumerate(values):
        cell = WriteOnlyCell(ws, value=xlsx_value(value))
        if isinstance(cell.value, str):
            cell.data_type = "s"
        if bold:
            cell.font = Font(bold=True)
        elif i in GRADE_COLUMNS and value in _BY_LABEL:
            cell.fill = _FILLS[_BY_LABEL[value]]
        out.append(cell)
    return out


def _summary(ws: WriteOnlyWorksheet, tally: Tally, lang: str, meta: Mapping[str, str]) -> None:
    for key in ("quarter", "teams", "calendar"):
        ws.append(_cells(ws, [word(key, lang), meta.get(key, "")]))
    ws.append(_cells(ws, [word("total", lang), tally.total]))
    ws.append([])
    ws.append(
        _cells(
            ws,
            [word("overall_grade", lang), *(grade_label(g, lang) for g in OVERALL_GRADES)],
            bold=True,
        )
    )
    ws.append(_cells(ws, ["", *(tally.overall.get(g, 0) for g in OVERALL_GRADES)]))
    ws.append([])
    ws.append(
        _cells(ws, [word("kpi", lang), *(grade_label(g, lang) for g in OVERALL_GRADES)], bold=True)
    )
    for key in GRADED_KEYS:
        counts = tally.per_kpi.get(key, Counter())
        ws.append(_cells(ws, [kpi_label(key, lang), *(counts.get(g, 0) for g in OVERALL_GRADES)]))


async def xlsx_file(
    appraisals: AsyncIterator[dict[str, Any]], lang: str, meta: Mapping[str, str]
) -> IO[bytes]:
    """The workbook in an anonymous temporary file, positioned at its start; the caller closes
    it. Write-only mode: rows go to openpyxl's per-sheet temp files as they come.

    No named file of ours exists (nothing to leak when a response never starts), and
    openpyxl's own sheet files are removed on every path, also when the rows fail or the
    request is cancelled (openpyxl itself would keep them until the process exits).
    """
    wb = Workbook(write_only=True)
    try:
        sheet = wb.create_sheet(word("sheet", lang))
        summary = wb.create_sheet(word("summary", lang))
        sheet.freeze_panes = "C2"
        sheet.append(_cells(sheet, headers(lang), bold=True))
        tally = Tally()
        async for appraisal in appraisals:
            tally.add(appraisal)
            sheet.append(_cells(sheet, row(appraisal, lang)))
        _summary(summary, tally, lang, meta)
    except BaseException:
        _discard(wb)
        raise
    out = tempfile.TemporaryFile(prefix="kpi-appraisal-", suffix=".xlsx")  # noqa: SIM115 - returned
    # Zipping is CPU work: keep it off the event loop. If the request is cancelled meanwhile
    # the thread still writes the file: it is closed when the thread is done, not under it.
    saving = asyncio.ensure_future(asyncio.to_thread(_save, wb, out))
    try:
        await asyncio.shield(saving)
    except BaseException:
        saving.add_done_callback(lambda _: out.close())
        raise
    out.seek(0)
    return out


def _save(wb: Workbook, out: IO[bytes]) -> None:
    try:
        wb.save(out)
    finally:
        _discard(wb)  # a sheet openpyxl saved has removed its own file already


def _discard(wb: Workbook) -> None:
    """Close and remove the per-sheet temp files of a write-only workbook that is not saved."""
    for ws in wb.worksheets:
        rows = getattr(ws, "_rows", None)
        writer = getattr(ws, "_writer", None)
        if writer is None:
            continue
        # Closing half-written XML may complain; the file goes away all the same.
        with contextlib.suppress(Exception):
            if rows is not None:
                rows.close()
        with contextlib.suppress(Exception):
            writer.close()
        with contextlib.suppress(OSError, ValueError):
            writer.cleanup()


async def file_chunks(out: IO[bytes]) -> AsyncIterator[bytes]:
    """Stream a finished file and close it afterwards (also when the client goes away); a
    stream that never starts leaves nothing on disk either: the file has no name."""
    try:
        while True:
            data = out.read(CHUNK)  # local temp file, small reads
            if not data:
                return
            yield data
    finally:
        out.close()
