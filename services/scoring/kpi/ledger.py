"""The explain ledger of stored tickets: which ``ticket:<id>`` rows kpi_facts should hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Final, TypeAlias

from services.scoring.kpi.apply import Document, held_by_ticket
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState

TICKET_SOURCE: Final = "ticket:"
# (specialist_id, metric, local date): a kpi_facts key without its source, in key order.
LedgerKey: TypeAlias = tuple[str, str, date]
LedgerRows: TypeAlias = dict[LedgerKey, tuple[float, int]]
# Sums of hours pass through float additions and subtractions: a share that is right may
# differ from the recomputed one in its last bits, never by this much.
TOLERANCE: Final = 1e-6
EXAMPLES: Final = 10


def ticket_source(ticket_id: str) -> str:
    return TICKET_SOURCE + ticket_id


def expected_rows(doc: Document, measure: Measure, kept_from: date | None = None) -> LedgerRows:
    """The kpi_facts rows (source ``ticket:<id>``) a stored ticket document says it holds.

    The same shares the engine subtracts before applying the ticket's next event
    (``held_by_ticket``: stored response/resolution hours and SLA bit, §3a measures only
    once marked), so a ledger that equals this stays right from then on. Days before
    ``kept_from`` (dropped by KPI_LEDGER_RETENTION_DAYS) hold no rows.
    Raises ValueError for a document that cannot be read.
    """
    if not doc:
        return {}
    held, _ = held_by_ticket(doc, TicketState.from_json(doc), measure)
    return {
        (who, metric, day): value
        for (who, day, metric), value in held.items()
        if kept_from is None or day >= kept_from
    }


def same_share(a: tuple[float, int], b: tuple[float, int]) -> bool:
    return a[1] == b[1] and abs(a[0] - b[0]) <= TOLERANCE * max(1.0, abs(a[0]), abs(b[0]))


def rows_off(stored: Mapping[LedgerKey, tuple[float, int]], expected: LedgerRows) -> int:
    """How many keys the stored rows get wrong: missing, extra or with another share."""
    off = sum(1 for key in stored if key not in expected)
    for key, share in expected.items():
        got = stored.get(key)
        if got is None or not same_share(got, share):
            off += 1
    return off


@dataclass
class LedgerCheck:
    """Totals of a pass over the stored tickets: how many, which disagree, by how many rows."""

    tickets: int = 0
    mismatching: int = 0
    rows_off: int = 0
    unreadable: int = 0
    examples: list[str] = field(default_factory=list)  # the first mismatching ticket ids
    unreadable_examples: list[str] = field(default_factory=list)
    # First day the ledger retention kept: earlier days' rows were dropped on purpose.
    kept_from: date | None = None

    def check(
        self,
        ticket_id: str,
        doc: Document,
        stored: Mapping[LedgerKey, tuple[float, int]],
        measure: Measure,
    ) -> LedgerRows | None:
        """Count one ticket; returns the rows it should have when its ledger is off."""
        self.tickets += 1
        try:
            expected = expected_rows(doc, measure, self.kept_from)
        except ValueError:
            self.unreadable += 1
            if len(self.unreadable_examples) < EXAMPLES:
                self.unreadable_examples.append(ticket_id)
            return None
        if self.kept_from is not None:
            stored = {k: v for k, v in stored.items() if k[2] >= self.kept_from}
        off = rows_off(stored, expected)
        if not off:
            return None
        self.mismatching += 1
        self.rows_off += off
        if len(self.examples) < EXAMPLES:
            self.examples.append(ticket_id)
        return expected

    @property
    def clean(self) -> bool:
        return not self.mismatching and not self.unreadable
