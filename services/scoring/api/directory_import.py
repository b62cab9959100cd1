"""CSV import of specialists: the file parsed and every cell checked before anything is written.

Columns: ``id`` (required), ``name``, ``team_id`` and ``aliases.<kind>`` for each alias kind
(a helpdesk or ``email``). A column that is absent leaves that field of existing specialists
as it is; an empty cell clears it (no name, no team, no alias of that kind).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from services.scoring.api.schemas import AliasValue, DirectoryId, DirectoryName
from services.scoring.directory_writes import CellError, ImportPlan, ImportRow
from shared.directory import ALIAS_KINDS, normalize_alias

MAX_ROWS: Final = 10_000
ALIAS_PREFIX: Final = "aliases."
COLUMNS: Final = ("id", "name", "team_id", *(ALIAS_PREFIX + k for k in ALIAS_KINDS))
HEADER_ROW: Final = 1  # rows are numbered as a spreadsheet shows them: the header is row 1
# Only spaces and tabs around a cell are padding; anything else is part of the value and is
# judged by the id rule (a control character is refused, not silently dropped).
_PADDING: Final = " \t"

_ID: TypeAdapter[str] = TypeAdapter(DirectoryId)
_NAME: TypeAdapter[str] = TypeAdapter(DirectoryName)
_ALIAS: TypeAdapter[str] = TypeAdapter(AliasValue)


class ImportRefused(Exception):
    """The file (or what it would do to the directory) has errors; nothing is written."""

    def __init__(self, errors: list[CellError]) -> None:
        super().__init__("; ".join(e.text() for e in errors[:5]))
        self.errors = errors


def _validated(adapter: TypeAdapter[str], value: str) -> tuple[str | None, str | None]:
    """(value, None) when the rule holds, else (None, the first reason)."""
    try:
        return adapter.validate_python(value), None
    except ValidationError as exc:
        first: dict[str, Any] = dict(exc.errors(include_url=False, include_input=False)[0])
        return None, str(first["msg"])


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, cells) of each record; a quoted cell may span lines."""
    # newline="": records end at CR, LF or CRLF only (not at U+2028 and the like, which a
    # name may hold), and a quoted line break stays inside its cell.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportRefused([CellError(number + 1, None, f"not valid CSV ({exc})")]) from None
        number += 1
        yield number, cells


def _header(cells: list[str]) -> list[str]:
    names = [c.strip(_PADDING).lower() for c in cells]
    errors = []
    for i, name in enumerate(names):
        if name not in COLUMNS:
            shown = name if name.isprintable() and len(name) <= 40 else repr(name[:40])
            errors.append(
                CellError(
                    HEADER_ROW,
                    f"#{i + 1}",
                    f"unknown column {shown!r}; the columns are {', '.join(COLUMNS)}",
                )
            )
        elif names.index(name) != i:
            errors.append(CellError(HEADER_ROW, name, "the column appears twice"))
    if "id" not in names:
        errors.append(CellError(HEADER_ROW, "id", "the id column is required"))
    if errors:
        raise ImportRefused(errors)
    return names


def parse_specialists_csv(body: bytes) -> ImportPlan:
    """The plan of a CSV body (UTF-8, an Excel BOM allowed), or ImportRefused naming each
    bad cell by row and column."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            [CellError(HEADER_ROW, None, f"the file is not UTF-8 text (byte {exc.start})")]
        ) from None
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise ImportRefused([CellError(HEADER_ROW, None, "the file is empty; a header is needed")])
    names = _header(first[1])
    kinds = tuple(n.removeprefix(ALIAS_PREFIX) for n in names if n.startswith(ALIAS_PREFIX))
    plan = ImportPlan("name" in names, "team_id" in names, kinds)
    errors: list[CellError] = []
    seen_ids: dict[str, int] = {}
    seen_aliases: dict[tuple[str, str], int] = {}
    for number, cells in records:
        if not any(c.strip(_PADDING) for c in cells):
            continue  # a blank line
        if len(plan.rows) >= MAX_ROWS:
            errors.append(CellError(number, None, f"more than {MAX_ROWS} rows; split the file"))
            break
        if len(cells) != len(names):
            errors.append(
                CellError(number, None, f"{len(cells)} cells, the header has {len(names)}")
            )
            continue
        row = _row(number, dict(zip(names, cells, strict=True)), plan, errors)
        if row is None:
            continue
        if row.id in seen_ids:
            errors.append(
                CellError(number, "id", f"{row.id!r} is already on row {seen_ids[row.id]}")
            )
            continue
        seen_ids[row.id] = number
        for kind, alias in row.aliases.items():
            if alias is None:
                continue
            other = seen_aliases.setdefault((kind, alias), number)
            if other != number:
                errors.append(
                    CellError(number, ALIAS_PREFIX + kind, f"{alias!r} is already on row {other}")
                )
        plan.rows.append(row)
    if errors:
        raise ImportRefused(errors)
    return plan


def _row(
    number: int, cells: dict[str, str], plan: ImportPlan, errors: list[CellError]
) -> ImportRow | None:
    """One record checked cell by cell; None (with its errors added) when a cell is bad."""
    before = len(errors)

    def check(column: str, adapter: TypeAdapter[str], required: bool = False) -> str | None:
        raw = cells.get(column, "").strip(_PADDING)
        if not raw:
            if required:
                errors.append(CellError(number, column, "required"))
            return None
        value, problem = _validated(adapter, raw)
        if problem is not None:
            errors.append(CellError(number, column, problem))
        return value

    specialist = check("id", _ID, required=True)
    name = check("name", _NAME) if plan.has_name else None
    team = check("team_id", _ID) if plan.has_team else None
    aliases: dict[str, str | None] = {}
    for kind in plan.alias_kinds:
        alias = check(ALIAS_PREFIX + kind, _ALIAS)
        aliases[kind] = None if alias is None else normalize_alias(kind, alias)
    if len(errors) > before or specialist is None:
        return None
    return ImportRow(number, specialist, name, team, aliases)
