"""Per-ticket export (GET /v1/tickets): stored states read in batches, streamed as CSV or XLSX."""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

import orjson

from services.scoring.db import Conn, ReadDb
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState
from services.scoring.kpi.ticket_row import TicketRow, opened_on, ticket_row
from services.scoring.xlsx_stream import XlsxStream
from shared.spreadsheet import csv_lines

BOM: Final = "\ufeff".encode()  # Excel reads a BOM-less CSV as the ANSI code page: CJK breaks
BATCH: Final = 1000  # states per fetch from the server-side cursor: what memory is bounded by
MAX_RANGE_DAYS: Final = 400  # as KPI windows and history
DEFAULT_RANGE_DAYS: Final = 30
CHUNK: Final = 64 * 1024
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

COLUMNS: Final = (
    "ticket_id",
    "specialist_id",
    "specialist_name",
    "team_id",
    "channel",
    "created",
    "first_response",
    "closed",
    "resolved",
    "reopens",
    "response_hours",
    "resolution_hours",
    "sla_met",
    "followed_up",
    "csat",
)
_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "ticket_id": {"en": "Ticket ID", "zh-CN": "工单编号"},
    "specialist_id": {"en": "Specialist ID", "zh-CN": "专员编号"},
    "specialist_name": {"en": "Specialist", "zh-CN": "专员姓名"},
    "team_id": {"en": "Team", "zh-CN": "团队"},
    "channel": {"en": "Channel", "zh-CN": "渠道"},
    "created": {"en": "Created", "zh-CN": "创建时间"},
    "first_response": {"en": "First response", "zh-CN": "首次响应时间"},
    "closed": {"en": "Latest closure", "zh-CN": "最近关闭时间"},
    "resolved": {"en": "Resolved", "zh-CN": "已解决"},
    "reopens": {"en": "Reopens", "zh-CN": "重开次数"},
    "response_hours": {"en": "Response time (h)", "zh-CN": "响应时长(小时)"},
    "resolution_hours": {"en": "Resolution time (h)", "zh-CN": "解决时长(小时)"},
    "sla_met": {"en": "First-response SLA met", "zh-CN": "首响达标"},
    "followed_up": {"en": "Followed up", "zh-CN": "已回访"},
    "csat": {"en": "CSAT score", "zh-CN": "满意度评分"},
}
_YES_NO: Final[Mapping[str, tuple[str, str]]] = {"en": ("yes", "no"), "zh-CN": ("是", "否")}
_SHEET: Final[Mapping[str, str]] = {"en": "Tickets", "zh-CN": "工单"}

# The stored documents whose ticket was opened in [$1, $2): a superset of the rows the
# export keeps (Python decides exactly, see opened_at). A v3 or v2 document lists its
# creations in time order, so the first is the earliest; other versions and tickets without a
# known creation go through to Python.
_STATES_SQL: Final = """
SELECT ticket_id, state::text AS state FROM ticket_states
WHERE state->>'v' IS NULL OR state->>'v' NOT IN ('2', '3') OR state->'c' IS NULL
   OR ((state->'c'->0->>1)::timestamptz >= $1 AND (state->'c'->0->>1)::timestamptz < $2)
ORDER BY ticket_id
"""


def headers(lang: str) -> list[str]:
    return [_LABELS[c][lang] for c in COLUMNS]


@dataclass(frozen=True)
class Person:
    """A specialist as the directory has them."""

    name: str | None
    team_id: str | None


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets: opened on a local date in [start, end], of these specialists."""

    start: dt.date
    end: dt.date
    # Specialists whose tickets are wanted (a team's members); None = every ticket.
    specialists: frozenset[str] | None = None

    def bounds(self, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
        """The UTC instants [lo, hi) of the local dates' range."""
        lo = dt.datetime.combine(self.start, dt.time(), tzinfo=tz)
        hi = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        return lo.astimezone(dt.UTC), hi.astimezone(dt.UTC)

    def keeps(self, row: TicketRow, measure: Measure) -> bool:
        day = opened_on(row, measure)
        if day is None or not self.start <= day <= self.end:
            return False
        return self.specialists is None or row.specialist_id in self.specialists


async def state_batches(
    db: ReadDb, lo: dt.datetime, hi: dt.datetime, batch: int | None = None
) -> AsyncIterator[list[tuple[str, str]]]:
    """Stored (ticket_id, state text) in ticket id order, ``batch`` at a time, from one
    snapshot: a server-side cursor in a read-only repeatable-read transaction.

    Leaving early (client gone, error) closes the cursor, rolls the transaction back and
    returns the connection to the pool, since this generator's context managers exit.
    """
    async with db.pool.acquire() as raw:
        conn: Any = raw
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await conn.cursor(_STATES_SQL, lo, hi)
            while True:
                records = await cursor.fetch(batch or BATCH)
                if not records:
                    return
                yield [(r[0], r[1]) for r in records]


async def directory(db: ReadDb | Conn, teams: Sequence[str] | None) -> dict[str, Person]:
    """Specialists by id: of ``teams``, or all when None."""
    if teams is None:
        records = await db.fetch("SELECT id, name, team_id FROM specialists")
    else:
        records = await db.fetch(
            "SELECT id, name, team_id FROM specialists WHERE team_id = ANY($1::text[])",
            list(teams),
        )
    return {r["id"]: Person(r["name"], r["team_id"]) for r in records}


def rows_of(
    batch: Sequence[tuple[str, str]], measure: Measure, keep: TicketFilter
) -> list[TicketRow]:
    """The rows of a batch of stored states that the filter keeps (empty states skipped)."""
    out: list[TicketRow] = []
    for _, text in batch:
        doc = orjson.loads(text)
        if not doc:
            continue  # a ticket row created by a batch that is still writing it
        row = ticket_row(TicketState.from_json(doc), measure)
        if keep.keeps(row, measure):
            out.append(row)
    return out


def _local(value: dt.datetime | None, tz: dt.tzinfo) -> dt.datetime | None:
    """Wall-clock time in the organisation's zone, without the zone (what a sheet shows)."""
    return None if value is None else value.astimezone(tz).replace(tzinfo=None)


def _hours(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def cells(row: TicketRow, people: Mapping[str, Person], tz: dt.tzinfo, lang: str) -> list[Any]:
    """The cells of one row in COLUMNS order; times as local wall-clock datetimes."""
    yes, no = _YES_NO[lang]
    person = people.get(row.specialist_id) if row.specialist_id is not None else None

    def flag(value: bool | None) -> str | None:
        return None if value is None else yes if value else no

    return [
        row.ticket_id,
        row.specialist_id,
        None if person is None else person.name,
        None if person is None else person.team_id,
        row.channel,
        _local(row.created, tz),
        _local(row.first_response, tz),
        _local(row.closed, tz),
        flag(row.resolved),
        row.reopens,
        _hours(row.response_hours),
        _hours(row.resolution_hours),
        flag(row.sla_met),
        flag(row.followed_up),
        row.csat,
    ]


@dataclass(frozen=True)
class Export:
    """Everything one export request streams from."""

    batches: AsyncIterator[list[tuple[str, str]]]
    people: Mapping[str, Person]
    keep: TicketFilter
    measure: Measure
    lang: str

    async def row_batches(self) -> AsyncGenerator[list[list[Any]]]:
        """Cells of the kept rows, one list per fetched batch (never more in memory)."""
        tz = self.measure.tz
        try:
            async for batch in self.batches:
                rows = rows_of(batch, self.measure, self.keep)
                yield [cells(r, self.people, tz, self.lang) for r in rows]
        finally:
            # Closing the source now (not when it is garbage-collected) ends its transaction.
            aclose = getattr(self.batches, "aclose", None)
            if aclose is not None:
                await aclose()


def _csv_cell(value: Any) -> Any:
    return value.strftime(_TIME_FORMAT) if isinstance(value, dt.datetime) else value


async def csv_stream(export: Export) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a BOM, CRLF records, one chunk per fetched batch."""
    yield BOM + csv_lines([headers(export.lang)])
    # aclosing: an ``async for`` left early does not close the generator it iterates; the
    # source's transaction must end when the response does, not when the GC gets to it.
    async with contextlib.aclosing(export.row_batches()) as batches:
        async for batch in batches:
            if batch:
                yield csv_lines([[_csv_cell(v) for v in values] for values in batch])


async def xlsx_file(export: Export) -> IO[bytes]:
    """The workbook in an anonymous temporary file, at its start; the caller closes it.

    Rows are zipped into the sheet as each batch comes (XlsxStream): memory holds one batch.
    The file has no name, so nothing is left on disk on any path (error, cancellation).
    """
    out = tempfile.TemporaryFile(prefix="kpi-tickets-", suffix=".xlsx")  # noqa: SIM115 - returned
    try:
        book = XlsxStream(out, _SHEET[export.lang], headers(export.lang))
        try:
            async with contextlib.aclosing(export.row_batches()) as batches:
                async for batch in batches:
                    book.append_rows(batch)
        except BaseException:
            book.abort()
            raise
        book.close()
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


async def file_chunks(out: IO[bytes]) -> AsyncIterator[bytes]:
    """Stream a finished file and close it afterwards (also when the client goes away)."""
    try:
        while True:
            data = out.read(CHUNK)
            if not data:
                return
            yield data
    finally:
        out.close()
