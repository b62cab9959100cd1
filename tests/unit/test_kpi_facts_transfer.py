"""A batch that moves a bucket's share between tickets without moving the bucket: the ledger."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.scoring.engine.handlers import write_deltas
from services.scoring.kpi.apply import Applied, apply_events, route
from services.scoring.kpi.measure import Measure
from shared.catalogue import FOLLOWUP_RATE, REOPEN_RATE, RESOLUTION_RATE
from shared.events import Event, validate_event_obj

SH = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 8)  # both closures fall on this Shanghai day


def closed(event_id: str, ticket_id: str, at: str, resolved: bool) -> Event:
    return validate_event_obj(
        {"event_id": event_id, "type": "ticket.closed", "occurred_at": at,
         "ticket_id": ticket_id, "specialist_id": "s3", "resolved": resolved}
    )  # fmt: skip


def reopened(event_id: str, ticket_id: str, at: str) -> Event:
    return validate_event_obj(
        {"event_id": event_id, "type": "ticket.reopened", "occurred_at": at,
         "ticket_id": ticket_id}
    )  # fmt: skip


def transfer(resolved: bool) -> Applied:
    """t5's closure counts; then one batch reopens t5 and closes t1 for the same bucket.

    The shrunk failing example of test_rescore's property test: s3's bucket keeps its
    value, but its share passes from ticket:t5 to ticket:t1.
    """
    measure = Measure(SH)
    first = route([closed("e45", "t5", "2026-03-07T17:59:59.998Z", resolved)])
    stored = apply_events(first, {"t5": {}}, {}, measure)
    docs = {t: orjson.loads(doc) for t, doc in stored.tickets.items()}
    second = route(
        [
            reopened("e47", "t5", "2026-11-01T01:30:00.001+08:00"),
            closed("e15", "t1", "2026-03-07T18:59:59.999Z", resolved),
        ]
    )
    return apply_events(second, {"t1": {}, "t5": docs["t5"]}, {}, measure)


@pytest.mark.parametrize("resolved", [False, True])
def test_a_share_passing_between_tickets_moves_only_the_facts(resolved: bool) -> None:
    applied = transfer(resolved)
    assert applied.deltas.daily == {}
    assert applied.affected == []  # scores do not move: nobody to republish
    point = 1.0 if resolved else 0.0
    # Every share a counted closure holds passes: reopen_rate's (neither was reopened before
    # its closure) and, when resolved, follow-up's.
    metrics = [RESOLUTION_RATE, REOPEN_RATE, *([FOLLOWUP_RATE] if resolved else [])]
    want: dict[Any, tuple[float, int]] = {}
    for metric in metrics:
        num = point if metric == RESOLUTION_RATE else 0.0
        want[("s3", metric, DAY, "ticket:t5")] = (-num, -1)
        want[("s3", metric, DAY, "ticket:t1")] = (num, 1)
    assert applied.deltas.facts == want


class RecordingConn:
    """A connection that records statements (the Conn protocol, no server)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, query: str, *args: Any) -> str:
        self.statements.append((query, args))
        return ""

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.statements.append((query, args))
        return []

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.statements.append((query, args))
        return None

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.statements.append((query, args))
        return None

    def is_in_transaction(self) -> bool:
        return True


@pytest.mark.parametrize("resolved", [False, True])
async def test_write_deltas_writes_facts_when_no_bucket_moves(resolved: bool) -> None:
    conn = RecordingConn()
    await write_deltas(conn, transfer(resolved).deltas)
    tables = [q.split("INSERT INTO ", 1)[1].split()[0] for q, _ in conn.statements if "INSERT" in q]
    # kpi_daily has nothing to add; kpi_facts must still move t5's share to t1.
    assert tables == ["kpi_facts"]
    (_, args) = next(s for s in conn.statements if "kpi_facts" in s[0])
    assert "ticket:t1" in args[3] and "ticket:t5" in args[3]
