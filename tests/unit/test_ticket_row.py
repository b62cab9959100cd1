"""Per-ticket export rows against a from-scratch reference: reopens, late events, calendars."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.scoring import xlsx_stream
from services.scoring.api.tickets import pick_lang
from services.scoring.calendar import parse_calendar
from services.scoring.kpi.breakdown import UNKNOWN_CHANNEL
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState
from services.scoring.kpi.ticket_row import TicketRow, ticket_row
from services.scoring.ticket_export import (
    BOM,
    COLUMNS,
    Export,
    Person,
    TicketFilter,
    cells,
    csv_stream,
    headers,
)
from services.scoring.xlsx_stream import XlsxStream
from shared.events import Event, validate_event_obj
from shared.spreadsheet import csv_lines
from tests.export_checks import hostile_text, read_xlsx, reference, xlsx_reference

TZ = ZoneInfo("Asia/Shanghai")
BASE = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)  # a Monday
STEP = dt.timedelta(minutes=15)
SLOTS = 5 * 96  # five days on a 15-minute grid
CAL = parse_calendar({"working_hours": ["09:00-12:00", "13:00-18:00"], "timezone": "Asia/Shanghai"})
CALENDAR_MEASURE = Measure(TZ, CAL.hours_fn(TZ), CAL.name)
PLAIN_MEASURE = Measure(TZ)
WHO = st.sampled_from(["s1", "s2", "王芳"])
SLOT = st.integers(0, SLOTS - 1)


def at(slot: int) -> dt.datetime:
    # Half the stamps carry +08:00: the state keeps offsets, comparisons must not care.
    when = BASE + slot * STEP
    return when.astimezone(dt.timezone(dt.timedelta(hours=8))) if slot % 2 else when


def business_hours(start: dt.datetime, end: dt.datetime) -> float:
    """Reference: 15-minute slots of [start, end) starting in working time (grid-aligned)."""
    slots = 0
    t = start
    while t < end:
        local = t.astimezone(TZ)
        minute = local.hour * 60 + local.minute
        if local.weekday() < 5 and (9 * 60 <= minute < 12 * 60 or 13 * 60 <= minute < 18 * 60):
            slots += 1
        t += STEP
    return slots / 4.0


@st.composite
def ticket_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    n = 0

    def add(kind: str, **fields: Any) -> None:
        nonlocal n
        n += 1
        out.append(
            {"event_id": f"e{n}", "type": kind, "ticket_id": "t1",
             "occurred_at": at(draw(SLOT)).isoformat(), **fields}
        )  # fmt: skip

    for _ in range(draw(st.integers(0, 2))):
        add("ticket.created", specialist_id=draw(st.none() | WHO))
    for _ in range(draw(st.integers(0, 2))):
        add("ticket.assigned", specialist_id=draw(WHO))
    for _ in range(draw(st.integers(0, 2))):
        add("ticket.first_response", specialist_id=draw(WHO))
    for _ in range(draw(st.integers(0, 3))):
        add("ticket.closed", specialist_id=draw(WHO), resolved=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 2))):
        add("ticket.reopened")
    for _ in range(draw(st.integers(0, 1))):
        add("ticket.followup", specialist_id=draw(WHO))
    for _ in range(draw(st.integers(0, 2))):
        add("survey.csat", score=draw(st.integers(1, 5)))
    for _ in range(draw(st.integers(0, 1))):
        add("survey.nps", score=draw(st.integers(0, 10)))
    return out


def expected(raw: list[dict[str, Any]], calendar: bool, sla: float) -> dict[str, Any]:
    """The row by SPEC §2/§3/§3a, computed straight from the events."""

    def ts(e: dict[str, Any]) -> dt.datetime:
        return dt.datetime.fromisoformat(e["occurred_at"])

    def of(kind: str) -> list[dict[str, Any]]:
        return sorted((e for e in raw if e["type"] == kind), key=lambda e: (ts(e), e["event_id"]))

    created, closed, reopened = of("ticket.created"), of("ticket.closed"), of("ticket.reopened")
    responses = of("ticket.first_response")
    counted = closed[-1] if closed else None
    if counted is not None and any(ts(r) > ts(counted) for r in reopened):
        counted = None
    owners = [(ts(e), 0, e["event_id"], e["specialist_id"]) for e in created]
    owners += [(ts(e), 1, e["event_id"], e["specialist_id"]) for e in of("ticket.assigned")]
    named = sorted(o for o in owners if o[3] is not None)
    opened = min(ts(e) for e in created) if created else None
    hours = resolution = None
    if opened is not None and responses and ts(responses[0]) >= opened:
        end = ts(responses[0])
        hours = business_hours(opened, end) if calendar else (end - opened).total_seconds() / 3600
    if opened is not None and counted is not None and ts(counted) >= opened:
        end = ts(counted)
        resolution = (
            business_hours(opened, end) if calendar else (end - opened).total_seconds() / 3600
        )
    csats = of("survey.csat")
    anchor = opened
    if anchor is None:
        others = [ts(e) for e in raw if e["type"].startswith("ticket.") and e["type"] not in
                  ("ticket.created", "ticket.followup")]  # fmt: skip
        anchor = min(others) if others else None
    return {
        "specialist_id": counted["specialist_id"] if counted else (named[-1][3] if named else None),
        "created": opened,
        "first_response": ts(responses[0]) if responses else None,
        "closed": ts(counted) if counted else None,
        "resolved": counted["resolved"] if counted else None,
        "reopens": len(reopened),
        "response_hours": hours,
        "resolution_hours": resolution,
        "sla_met": None if hours is None else hours <= sla,
        "followed_up": any(e["type"] == "ticket.followup" for e in raw),
        "csat": csats[-1]["score"] if csats else None,
        "opened": anchor,
        "channel": UNKNOWN_CHANNEL,
    }


def fold(events: list[Event]) -> TicketState:
    state = TicketState("t1")
    for e in events:
        state.apply(e)
    return state


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)


@settings(max_examples=300, deadline=None)
@given(
    raw=ticket_events(), calendar=st.booleans(), order=st.randoms(), sla=st.sampled_from([1, 24])
)
def test_row_matches_the_reference_in_any_arrival_order(
    raw: list[dict[str, Any]], calendar: bool, order: Any, sla: float
) -> None:
    events = [validate_event_obj(e) for e in raw]
    shuffled = events + events[: len(events) // 2]  # redeliveries change nothing
    order.shuffle(shuffled)
    measure = replace(CALENDAR_MEASURE if calendar else PLAIN_MEASURE, sla_hours=sla)
    row = ticket_row(fold(shuffled), measure)
    # The stored document round-trips to the same row (the export reads stored states).
    assert ticket_row(TicketState.from_json(fold(events).to_json()), measure) == row
    want = expected(raw, calendar, sla)
    for key in ("response_hours", "resolution_hours"):
        assert close(getattr(row, key), want.pop(key)), key
    got = {k: v for k, v in vars(row).items() if k in want}
    assert got == want


def test_reopen_after_the_closure_clears_it_and_the_owner_takes_over() -> None:
    raw = [
        {"event_id": "c", "type": "ticket.created", "ticket_id": "t1", "specialist_id": "s1",
         "occurred_at": "2026-03-02T09:00:00+08:00"},
        {"event_id": "a", "type": "ticket.assigned", "ticket_id": "t1", "specialist_id": "s2",
         "occurred_at": "2026-03-02T10:00:00+08:00"},
        {"event_id": "x", "type": "ticket.closed", "ticket_id": "t1", "specialist_id": "s3",
         "resolved": True, "occurred_at": "2026-03-02T11:00:00+08:00"},
        {"event_id": "o", "type": "ticket.reopened", "ticket_id": "t1",
         "occurred_at": "2026-03-02T12:00:00+08:00"},
    ]  # fmt: skip
    row = ticket_row(fold([validate_event_obj(e) for e in raw]), PLAIN_MEASURE)
    assert (row.specialist_id, row.closed, row.resolved, row.reopens) == ("s2", None, None, 1)
    assert row.resolution_hours is None
    # A closure after the reopen counts again, for its specialist; the reopen stays counted.
    late = {"event_id": "y", "type": "ticket.closed", "ticket_id": "t1", "specialist_id": "s3",
            "resolved": False, "occurred_at": "2026-03-02T15:30:00+08:00"}  # fmt: skip
    row = ticket_row(fold([validate_event_obj(e) for e in [*raw, late]]), PLAIN_MEASURE)
    assert (row.specialist_id, row.resolved, row.reopens) == ("s3", False, 1)
    assert row.resolution_hours == 6.5


def test_business_calendar_counts_working_hours_and_sla_uses_them() -> None:
    # Friday 17:00 to Monday 10:00 (+08:00): 1 + 1 = 2 working hours, 65 calendar hours.
    raw = [
        {"event_id": "c", "type": "ticket.created", "ticket_id": "t1", "specialist_id": "s1",
         "occurred_at": "2026-03-06T17:00:00+08:00"},
        {"event_id": "f", "type": "ticket.first_response", "ticket_id": "t1",
         "specialist_id": "s1", "occurred_at": "2026-03-09T10:00:00+08:00"},
    ]  # fmt: skip
    state = fold([validate_event_obj(e) for e in raw])
    assert ticket_row(state, CALENDAR_MEASURE).response_hours == 2.0
    assert ticket_row(state, CALENDAR_MEASURE).sla_met is True
    assert ticket_row(state, PLAIN_MEASURE).response_hours == 65.0
    assert ticket_row(state, PLAIN_MEASURE).sla_met is False


# -- cells, CSV ----------------------------------------------------------------------------


def _row(**over: Any) -> TicketRow:
    base: dict[str, Any] = dict.fromkeys(
        (
            "specialist_id",
            "created",
            "first_response",
            "closed",
            "resolved",
            "response_hours",
            "resolution_hours",
            "sla_met",
            "csat",
            "opened",
        )
    )
    base.update(ticket_id="t", channel="unknown", reopens=0, followed_up=False)
    base.update(over)
    return TicketRow(**base)


@given(ticket=hostile_text(storable=True, min_size=1), who=hostile_text(storable=True, min_size=1),
       name=hostile_text(storable=True))  # fmt: skip
def test_csv_cells_read_back_as_text_and_hold_no_formula(ticket: str, who: str, name: str) -> None:
    people = {who: Person(name, "华北")}
    row = _row(ticket_id=ticket, specialist_id=who, response_hours=1.234567, reopens=2, csat=5)
    line = csv_lines([cells(row, people, TZ, "zh-CN")])
    (back,) = list(csv.reader(io.StringIO(line.decode("utf-8"), newline="")))
    assert back[0] == reference(ticket)
    assert back[1] == reference(who)
    assert back[2] == reference(name)
    assert back[3] == "华北"
    assert back[9:12] == ["2", "1.23", ""]
    assert back[13] == "否"  # followed up
    assert back[14] == "5"


def test_headers_in_both_languages_name_every_column() -> None:
    assert len(headers("en")) == len(headers("zh-CN")) == len(COLUMNS)
    assert headers("en")[0] == "Ticket ID" and headers("zh-CN")[0] == "工单编号"


async def test_csv_stream_pulls_batches_lazily_and_closes_its_source() -> None:
    """Memory is bounded by one batch: the stream asks for the next batch only when the
    client reads on, and a client that goes away closes the source (its transaction)."""
    pulled = 0
    closed = asyncio.Event()
    state = TicketState.from_json(
        fold([validate_event_obj({"event_id": "c", "type": "ticket.created", "ticket_id": "t1",
                                  "occurred_at": "2026-03-02T09:00:00+08:00"})]).to_json()
    )  # fmt: skip
    text = str(state.to_json()).replace("'", '"')

    async def batches() -> AsyncIterator[list[tuple[str, str]]]:
        nonlocal pulled
        try:
            for _ in range(1000):
                pulled += 1
                yield [("t1", text)] * 3
        finally:
            closed.set()

    keep = TicketFilter(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    stream = csv_stream(Export(batches(), {}, keep, PLAIN_MEASURE, "en"))
    head = await anext(stream)
    assert head.startswith(BOM)
    first = await anext(stream)
    assert first.count(b"\r\n") == 3
    assert pulled == 1
    await stream.aclose()  # what a cancelled response does to its body iterator
    assert closed.is_set()
    assert pulled == 1


# -- XLSX ------------------------------------------------------------------------------------


def _book(rows: list[list[Any]], sheet_rows: int | None = None) -> Any:
    out = io.BytesIO()
    book = XlsxStream(out, "工单", ["A", "B", "C"])
    book.append_rows(rows)
    book.close()
    return read_xlsx(out.getvalue())


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(hostile_text(), min_size=1, max_size=5))
@example(texts=["_x0041_", "=1+1", "#N/A", "a&<b>\r\n", "\x00\ud800王"])
def test_xlsx_text_reads_back_as_text_and_holds_no_formula(texts: list[str]) -> None:
    wb = _book([[t, 1.5, dt.datetime(2026, 3, 2, 9, 30)] for t in texts])
    got = list(wb.worksheets[0].iter_rows(values_only=True))
    assert got[0] == ("A", "B", "C")
    # openpyxl does not decode the _xHHHH_ escape that Excel does: "_x0041_" is kept literal
    # for Excel by escaping its "_" (_x005F_), which openpyxl shows as written.
    want = [re.sub(r"_(x[0-9A-Fa-f]{4}_)", r"_x005F_\1", xlsx_reference(t)) or None for t in texts]
    assert [r[0] for r in got[1:]] == want
    assert {r[1:] for r in got[1:]} == {(1.5, dt.datetime(2026, 3, 2, 9, 30))}


def test_xlsx_goes_on_to_a_new_sheet_when_one_is_full(monkeypatch: Any) -> None:
    monkeypatch.setattr(xlsx_stream, "SHEET_ROWS", 2)
    wb = _book([[f"t{i}", i, None] for i in range(5)])
    assert wb.sheetnames == ["工单", "工单 2", "工单 3"]
    rows = [list(ws.iter_rows(values_only=True)) for ws in wb.worksheets]
    assert rows[1] == [("A", "B", "C"), ("t2", 2, None), ("t3", 3, None)]
    assert [ws.freeze_panes for ws in wb.worksheets] == ["B2"] * 3


def test_an_assignment_at_the_creation_instant_names_the_owner() -> None:
    """At equal instants the assignment supersedes the creation's assignee (as for surveys)."""
    raw = [
        {"event_id": "z", "type": "ticket.created", "ticket_id": "t1", "specialist_id": "s1",
         "occurred_at": "2026-03-02T09:00:00+08:00"},
        {"event_id": "a", "type": "ticket.assigned", "ticket_id": "t1", "specialist_id": "s2",
         "occurred_at": "2026-03-02T01:00:00+00:00"},
    ]  # fmt: skip
    row = ticket_row(fold([validate_event_obj(e) for e in raw]), PLAIN_MEASURE)
    assert row.specialist_id == "s2"


def test_header_language_from_lang_else_accept_language() -> None:
    assert pick_lang("en", "zh-CN") == "en"
    assert pick_lang(None, None) == "zh-CN"
    assert pick_lang(None, "fr-FR,fr;q=0.9") == "zh-CN"
    assert pick_lang(None, "en-GB,en;q=0.9") == "en"
    assert pick_lang(None, "zh;q=0.5, en;q=0.8") == "en"
    assert pick_lang(None, "zh-TW,en;q=0.9") == "zh-CN"
    assert pick_lang(None, "en;q=0, zh;q=bad") == "zh-CN"
