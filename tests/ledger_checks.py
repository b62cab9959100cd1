"""The per-ticket explain-ledger check shared by the engine, rescore and ledger tests."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.calendar import load_calendar
from services.scoring.kpi.apply import held_by_ticket
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState

CN_CALENDAR = Path(__file__).resolve().parents[1] / "examples" / "calendar-cn-2026.yaml"


async def assert_ledger_matches_states(engine: AsyncEngine, tz: tzinfo) -> None:
    """Each ticket's kpi_facts rows are what its stored document says it contributes.

    kpi_daily sums may be right while a share sits under the wrong source (the explain
    view would blame the wrong ticket); this checks every step, not only the end.
    ``tz`` is the zone the events were scored in (it decides the day buckets).
    Written apart from services/scoring/kpi/ledger.py (which `kpi ledger` uses), so that
    it checks that too.
    """
    async with engine.connect() as conn:
        docs = await conn.execute(text("SELECT ticket_id, state::text FROM ticket_states"))
        states = {r[0]: orjson.loads(r[1]) for r in docs}
        rows = await conn.execute(
            text(
                "SELECT source, specialist_id, day, metric, num, den FROM kpi_facts "
                "WHERE source LIKE 'ticket:%'"
            )
        )
        facts: dict[str, dict[Any, tuple[float, int]]] = {}
        for r in rows:
            facts.setdefault(r[0].removeprefix("ticket:"), {})[(r[1], r[2], r[3])] = (
                float(r[4]),
                int(r[5]),
            )
    # Any calendar: held_by_ticket then reads the response hours the document says are held.
    measure = Measure(tz, load_calendar(CN_CALENDAR).hours_fn(tz))
    for ticket_id in sorted(states.keys() | facts.keys()):
        doc = states.get(ticket_id) or {}
        held = held_by_ticket(doc, TicketState.from_json(doc), measure)[0] if doc else {}
        got = facts.get(ticket_id, {})
        assert got.keys() == held.keys(), (ticket_id, got, held)
        for key, (num, den) in held.items():
            assert got[key][1] == den, (ticket_id, key, got[key], (num, den))
            assert got[key][0] == pytest.approx(num, abs=1e-6), (ticket_id, key, got[key])
