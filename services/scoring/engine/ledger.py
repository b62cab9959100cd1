"""Checking and repairing the explain ledger (`kpi ledger verify|repair`): passes and SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.db import Conn, Record, raw_connection
from services.scoring.engine import repository
from services.scoring.engine.handlers import TICKETS
from services.scoring.kpi.apply import Document
from services.scoring.kpi.ledger import (
    EXAMPLES,
    TICKET_SOURCE,
    TOLERANCE,
    LedgerCheck,
    LedgerKey,
    LedgerRows,
    expected_rows,
    rows_off,
    ticket_source,
)
from services.scoring.kpi.measure import Measure

# One pass reads every ticket and ledger row: the first fetch waits for PostgreSQL to sort
# the ledger's ticket rows, and the bucket check aggregates the whole ledger. The
# connection's command timeout (a minute) is for the engine's short statements.
LONG_STATEMENT_SECONDS: Final = 6 * 3600.0
PREFETCH: Final = 2000
PROGRESS_EVERY: Final = 500

# Every stored ticket with its state row (xmin: which version of it) and its ledger rows, in
# ticket-id order. PostgreSQL merges the two (Merge Append): ticket_states in its primary-key
# order, the ledger's ticket rows sorted once by the id in their source (kpi_facts has no
# index on source), both in the database's collation, so equal ids arrive next to each other.
# Ledger rows of a ticket without a state row come as a group with no state row.
SCAN = f"""
SELECT id, version, state, specialist_id, metric, day, num, den FROM (
    SELECT ticket_id AS id, xmin::text AS version, state::text AS state,
           NULL::varchar AS specialist_id, NULL::varchar AS metric, NULL::date AS day,
           NULL::float8 AS num, NULL::bigint AS den
    FROM ticket_states
    UNION ALL
    SELECT substr(source, {len(TICKET_SOURCE) + 1})::varchar, NULL, NULL,
           specialist_id, metric, day, num, den
    FROM kpi_facts WHERE source LIKE '{TICKET_SOURCE}%'
) u
ORDER BY id
"""


class ScanConn(Conn, Protocol):
    """A connection that can also stream a query through a server-side cursor."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Record]: ...

    def cursor(
        self, query: str, *args: Any, prefetch: int | None = None, timeout: float | None = None
    ) -> Any: ...


@dataclass
class StoredTicket:
    """A ticket as one consistent read found it: its state row and its ledger rows."""

    ticket_id: str
    version: str | None = None  # xmin of its state row: changes whenever the row is written
    doc: Document = field(default_factory=dict)
    rows: dict[LedgerKey, tuple[float, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class BucketDifference:
    """A day bucket whose ledger rows (all sources) do not sum to its kpi_daily row."""

    specialist_id: str
    day: dt.date
    metric: str
    daily: tuple[float, int]
    ledger: tuple[float, int]


@dataclass
class LedgerReport:
    """What a verify or repair pass found (and, for a repair, rewrote)."""

    check: LedgerCheck = field(default_factory=LedgerCheck)
    stored: int = 0  # ticket_states rows when the pass started (for progress)
    buckets_off: int | None = None  # None: not checked (repair)
    bucket_examples: list[BucketDifference] = field(default_factory=list)
    repaired: int = 0  # tickets whose ledger rows were rewritten (or would be: dry run)
    rows_deleted: int = 0
    rows_written: int = 0

    @property
    def clean(self) -> bool:
        return self.check.clean and not self.buckets_off


Progress = Callable[[int, int], None]


async def stored_tickets(conn: ScanConn, prefetch: int = PREFETCH) -> AsyncIterator[StoredTicket]:
    """Every ticket with a state row or ledger rows, one at a time, in one statement (the
    caller's transaction must stay open while iterating)."""
    current: StoredTicket | None = None
    cursor = conn.cursor(SCAN, prefetch=prefetch, timeout=LONG_STATEMENT_SECONDS)
    async for r in cursor:
        if current is None or current.ticket_id != r[0]:
            if current is not None:
                yield current
            current = StoredTicket(r[0])
        if r[1] is not None:
            current.version = r[1]
            current.doc = orjson.loads(r[2])
        else:
            current.rows[(r[3], r[4], r[5])] = (float(r[6]), int(r[7]))
    if current is not None:
        yield current


async def kept_from(conn: ScanConn) -> dt.date | None:
    """First day whose facts KPI_LEDGER_RETENTION_DAYS kept; None while all are kept."""
    row = await conn.fetchrow("SELECT kept_from FROM ledger_retention")
    return None if row is None else row["kept_from"]


async def bucket_differences(
    conn: ScanConn, limit: int = EXAMPLES, since: dt.date | None = None
) -> tuple[int, list[BucketDifference]]:
    """How many day buckets' ledger sums differ from kpi_daily, and the first ``limit``
    (from ``since`` on: the ledger retention dropped earlier days' facts, not kpi_daily's)."""
    rows = await conn.fetch(
        """
        WITH ledger AS (
            SELECT specialist_id, day, metric, sum(num) AS num, sum(den) AS den
            FROM kpi_facts WHERE $3::date IS NULL OR day >= $3
            GROUP BY specialist_id, day, metric
        ), daily AS (
            SELECT specialist_id, day, metric, num, den FROM kpi_daily
            WHERE $3::date IS NULL OR day >= $3
        ), off AS (
            SELECT specialist_id, day, metric,
                   coalesce(d.num, 0) AS daily_num, coalesce(d.den, 0) AS daily_den,
                   coalesce(l.num, 0) AS ledger_num, coalesce(l.den, 0) AS ledger_den
            FROM daily d FULL JOIN ledger l USING (specialist_id, day, metric)
        )
        SELECT *, count(*) OVER () AS total FROM off
        WHERE daily_den <> ledger_den OR abs(daily_num - ledger_num)
            > $2 * greatest(1, abs(daily_num), abs(ledger_num))
        ORDER BY specialist_id, day, metric
        LIMIT $1
        """,
        limit,
        TOLERANCE,
        since,
        timeout=LONG_STATEMENT_SECONDS,
    )
    found = [
        BucketDifference(
            r["specialist_id"],
            r["day"],
            r["metric"],
            (float(r["daily_num"]), int(r["daily_den"])),
            (float(r["ledger_num"]), int(r["ledger_den"])),
        )
        for r in rows
    ]
    return (int(rows[0]["total"]) if rows else 0), found


async def _snapshot(session: AsyncSession) -> ScanConn:
    """The session's connection in a read-only transaction that sees one snapshot throughout."""
    await session.connection(
        execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    )
    conn: ScanConn = await raw_connection(session)  # type: ignore[assignment]
    return conn


async def verify_ledger(
    sessions: async_sessionmaker[AsyncSession], measure: Measure, progress: Progress | None = None
) -> LedgerReport:
    """Compare every stored ticket's ledger rows with its document, and every day bucket's
    ledger sum with kpi_daily, in one consistent snapshot (safe while scoring runs)."""
    report = LedgerReport()
    async with sessions() as session:
        conn = await _snapshot(session)
        report.check.kept_from = since = await kept_from(conn)
        report.stored = await repository.count_stored_tickets(conn)
        async for ticket in stored_tickets(conn):
            report.check.check(ticket.ticket_id, ticket.doc, ticket.rows, measure)
            _tick(report, progress)
        report.buckets_off, report.bucket_examples = await bucket_differences(conn, since=since)
    _done(report, progress)
    return report


async def repair_ledger(
    sessions: async_sessionmaker[AsyncSession],
    measure: Measure,
    *,
    batch: int = 1000,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> LedgerReport:
    """Rewrite the ledger rows of every ticket whose rows disagree with its document.

    One read pass (as verify) finds them; every ``batch`` of them is rewritten in its own
    short transaction on a second connection, under the engine's row locks. kpi_daily is
    left alone. A second run finds nothing to do.
    """
    report = LedgerReport()
    found: list[StoredTicket] = []

    async def flush() -> None:
        async with sessions() as session:
            conn = await raw_connection(session)
            deleted, written, repaired = await repair_tickets(
                conn, found, measure, report.check.kept_from
            )
            await (session.rollback() if dry_run else session.commit())
        report.repaired += repaired
        report.rows_deleted += deleted
        report.rows_written += written
        found.clear()

    async with sessions() as session:
        conn = await _snapshot(session)
        report.check.kept_from = await kept_from(conn)
        report.stored = await repository.count_stored_tickets(conn)
        async for ticket in stored_tickets(conn):
            if report.check.check(ticket.ticket_id, ticket.doc, ticket.rows, measure) is not None:
                found.append(ticket)
                if len(found) >= batch:
                    await flush()
            _tick(report, progress)
    if found:
        await flush()
    _done(report, progress)
    return report


def _tick(report: LedgerReport, progress: Progress | None) -> None:
    if progress is not None and report.check.tickets % PROGRESS_EVERY == 0:
        progress(report.check.tickets, max(report.stored, report.check.tickets))


def _done(report: LedgerReport, progress: Progress | None) -> None:
    if progress is not None:
        progress(report.check.tickets, report.check.tickets)


async def repair_tickets(
    conn: Conn,
    found: Sequence[StoredTicket],
    measure: Measure,
    since: dt.date | None = None,
) -> tuple[int, int, int]:
    """Rewrite the ledger rows of tickets a read pass found off, in the caller's transaction.

    The state rows are locked in key order exactly like the engine and rescore (which also
    creates a ``{}`` row for a ledger-only ticket, as an event for it would), so this is
    safe while scoring runs: only a transaction holding a ticket's lock writes its ledger
    rows. Each ticket is checked again under the lock; a ticket written since the read (its
    state row has another xmin) has its ledger rows read again first; a rewritten ticket's
    state row gets a new xmin too. Returns rows deleted, rows written and tickets rewritten.
    """
    if not found:
        return 0, 0, 0
    by_id = {t.ticket_id: t for t in found}
    ids = sorted(by_id)
    docs = await repository.lock_states(conn, *TICKETS, ids)
    versions = await _versions(conn, ids)
    current: dict[str, Mapping[LedgerKey, tuple[float, int]]] = {i: by_id[i].rows for i in ids}
    # Also a ledger-only ticket, whose row the lock just created: rare, and read again.
    moved = [i for i in ids if versions.get(i) != by_id[i].version]
    if moved:
        current.update(await ledger_rows(conn, moved))
    gone: list[tuple[str, str, dt.date, str]] = []
    rows: dict[tuple[str, str, dt.date, str], tuple[float, int]] = {}
    fixed: list[str] = []
    for ticket_id in ids:
        try:
            expected: LedgerRows = expected_rows(docs.get(ticket_id) or {}, measure, since)
        except ValueError:
            continue  # counted as unreadable by the pass; nothing to rewrite it from
        held = current.get(ticket_id, {})
        if since is not None:  # rows of dropped days are the retention's, not to rewrite
            held = {k: v for k, v in held.items() if k[2] >= since}
        if not rows_off(held, expected):
            continue
        fixed.append(ticket_id)
        source = ticket_source(ticket_id)
        gone.extend((*key, source) for key in held)
        rows.update({(*key, source): share for key, share in expected.items()})
    if fixed:
        await _delete(conn, gone)
        await _write(conn, rows)
        await _touch(conn, fixed)
    return len(gone), len(rows), len(fixed)


async def _touch(conn: Conn, ids: Sequence[str]) -> None:
    """Give the rewritten tickets' state rows a new version (xmin), as every other writer of
    their ledger rows does: a repair that read them before this one re-reads them."""
    await conn.execute(
        "UPDATE ticket_states SET updated_at = updated_at WHERE ticket_id = ANY($1::text[])",
        list(ids),
    )


async def _versions(conn: Conn, ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT ticket_id, xmin::text FROM ticket_states WHERE ticket_id = ANY($1::text[])",
        list(ids),
    )
    return {r[0]: r[1] for r in rows}


async def ledger_rows(
    conn: Conn, ticket_ids: Sequence[str]
) -> dict[str, dict[LedgerKey, tuple[float, int]]]:
    """The ledger rows of some tickets (one pass over kpi_facts: it has no index on source)."""
    rows = await conn.fetch(
        """
        SELECT source, specialist_id, metric, day, num, den FROM kpi_facts
        WHERE source = ANY($1::text[])
        """,
        [ticket_source(i) for i in ticket_ids],
    )
    out: dict[str, dict[LedgerKey, tuple[float, int]]] = {i: {} for i in ticket_ids}
    for r in rows:
        out[r[0][len(TICKET_SOURCE) :]][(r[1], r[2], r[3])] = (float(r[4]), int(r[5]))
    return out


async def _delete(conn: Conn, keys: Sequence[tuple[str, str, dt.date, str]]) -> None:
    if not keys:
        return
    keys = sorted(keys)
    await conn.execute(
        """
        DELETE FROM kpi_facts f
        USING unnest($1::text[], $2::text[], $3::date[], $4::text[]) AS u(s, m, d, src)
        WHERE f.specialist_id = u.s AND f.metric = u.m AND f.day = u.d AND f.source = u.src
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
    )


async def _write(
    conn: Conn, rows: Mapping[tuple[str, str, dt.date, str], tuple[float, int]]
) -> None:
    """Insert the rows in the engine's key order; a row a concurrent repair wrote since our
    read is overwritten with the same share."""
    if not rows:
        return
    keys = list(rows)
    await conn.execute(
        """
        INSERT INTO kpi_facts (specialist_id, metric, day, source, num, den)
        SELECT s, m, d, src, n, c
        FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::float8[], $6::bigint[])
            AS u(s, m, d, src, n, c)
        ORDER BY s COLLATE "C", m COLLATE "C", d, src COLLATE "C"
        ON CONFLICT (specialist_id, metric, day, source) DO UPDATE
        SET num = excluded.num, den = excluded.den
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
        [rows[k][0] for k in keys],
        [rows[k][1] for k in keys],
    )
