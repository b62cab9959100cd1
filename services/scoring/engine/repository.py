"""Write-side SQL of the scoring engine: bulk ``unnest`` statements in sorted key order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import orjson

# Callers (and tests) reach the transaction's connection through the repository, as in notify.
from services.scoring.db import Conn
from services.scoring.db import raw_connection as raw_connection
from shared.schema import WRITE_FENCE_KEY, check_revision

DailyKey: TypeAlias = tuple[str, dt.date, str]
FactKey: TypeAlias = tuple[str, str, dt.date, str]
EMPTY_STATE = "{}"
# Any constant works; it only has to be the same in every scoring process.
RETENTION_LOCK_KEY = 0x6B70695F64656475
# Held shared by every claim and exclusive by a partition switch or drop (docs/engine.md).
DEDUP_CLAIM_LOCK_KEY = WRITE_FENCE_KEY


async def try_lock(conn: Conn, key: int) -> bool:
    """Take a transaction-scoped advisory lock if free: one worker across processes."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key))


def _text_array(values: Sequence[str]) -> str:
    """``values`` as one array literal, for a ``$n::text::text[]`` parameter.

    asyncpg encodes a text[] element by element (~0.3 µs each: the largest client cost of a
    batch); joining and escaping one string runs in C at a tenth of that. Inside double
    quotes array_in takes every character literally except the escaped quote and backslash.
    Parsing the literal costs PostgreSQL more per byte than the binary array, so this is
    for short keys (ids, metrics, sources), not hashes or state documents.
    """
    if not values:
        return "{}"
    joined = "\x00".join(values)
    if joined.count("\x00") != len(values) - 1:
        # A value holds a NUL (which PostgreSQL rejects anyway): quote one by one.
        return '{"' + '","'.join(_escape(v) for v in values) + '"}'
    return '{"' + _escape(joined).replace("\x00", '","') + '"}'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# -- offsets ---------------------------------------------------------------------------


async def lock_offsets(
    conn: Conn, group_id: str, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], int | None]:
    """Lock the partitions' offset rows (sorted, so two owners never deadlock).

    Returns next_offset per partition, None where no row existed yet (the row is created
    with -1 so that this transaction holds its lock too).
    """
    keys = sorted(set(partitions))
    topics = [t for t, _ in keys]
    parts = [p for _, p in keys]
    inserted = await conn.fetch(
        """
        INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at)
        SELECT $1, t, p, -1, now() FROM unnest($2::text[], $3::int[]) AS u(t, p)
        ORDER BY t, p
        ON CONFLICT DO NOTHING
        RETURNING topic, partition
        """,
        group_id,
        topics,
        parts,
    )
    rows = await conn.fetch(
        """
        SELECT topic, partition, next_offset FROM consumer_offsets
        WHERE group_id = $1 AND (topic, partition) IN (
            SELECT t, p FROM unnest($2::text[], $3::int[]) AS u(t, p))
        ORDER BY topic, partition
        FOR UPDATE
        """,
        group_id,
        topics,
        parts,
    )
    fresh = {(r["topic"], r["partition"]) for r in inserted}
    out: dict[tuple[str, int], int | None] = {}
    for r in rows:
        key = (r["topic"], r["partition"])
        value = int(r["next_offset"])
        out[key] = None if key in fresh or value < 0 else value
    return out


async def store_offsets(
    conn: Conn,
    group_id: str,
    next_offsets: Mapping[tuple[str, int], int],
    fingerprints: Mapping[tuple[str, int], str | None] | None = None,
) -> None:
    """Advance (never rewind) the stored offsets of the batch's partitions.

    ``fingerprints`` identify the record at ``next_offset - 1`` (shared.offsets): the
    consumer compares it with the record found there after its next assignment.
    """
    keys = sorted(next_offsets)
    fps = fingerprints or {}
    await conn.execute(
        """
        UPDATE consumer_offsets c
        SET next_offset = GREATEST(c.next_offset, u.o),
            fingerprint = CASE WHEN u.o >= c.next_offset THEN u.f ELSE c.fingerprint END,
            updated_at = now()
        FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS u(t, p, o, f)
        WHERE c.group_id = $1 AND c.topic = u.t AND c.partition = u.p
        """,
        group_id,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [next_offsets[k] for k in keys],
        [fps.get(k) for k in keys],
    )


async def rewind_offset(
    conn: Conn, group_id: str, topic: str, partition: int, next_offset: int
) -> int | None:
    """Set a partition's stored offset back to ``next_offset`` (the broker's log was reset).

    The only statement that moves an offset backwards; returns the offset it replaced.
    """
    before = await conn.fetchval(
        """
        UPDATE consumer_offsets c SET next_offset = $4, fingerprint = NULL, updated_at = now()
        FROM consumer_offsets old
        WHERE c.group_id = $1 AND c.topic = $2 AND c.partition = $3
          AND old.group_id = c.group_id AND old.topic = c.topic AND old.partition = c.partition
        RETURNING old.next_offset
        """,
        group_id,
        topic,
        partition,
        next_offset,
    )
    return int(before) if before is not None else None


async def read_offsets(
    conn: Conn, group_id: str, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, str | None]]:
    """Stored (next offset, fingerprint) pairs (no lock) for seeking after an assignment."""
    rows = await conn.fetch(
        """
        SELECT topic, partition, next_offset, fingerprint FROM consumer_offsets
        WHERE group_id = $1 AND next_offset >= 0 AND (topic, partition) IN (
            SELECT t, p FROM unnest($2::text[], $3::int[]) AS u(t, p))
        """,
        group_id,
        [t for t, _ in partitions],
        [p for _, p in partitions],
    )
    return {(r["topic"], r["partition"]): (int(r["next_offset"]), r["fingerprint"]) for r in rows}


# -- dedup -----------------------------------------------------------------------------


async def claim_events(conn: Conn, ids: Sequence[str], hashes: Sequence[str]) -> set[str]:
    """Insert event ids (sorted); returns the ids that were new. Blocks on a concurrent
    insert of the same id until that transaction ends, so an id is claimed exactly once.

    processed_events is partitioned by generation (of claim time) and PostgreSQL enforces
    the key only inside a partition, so a claim (1) takes the claim lock shared, which the
    generation switch takes exclusive, then (2) in one statement skips the ids an older
    generation holds and inserts the rest into the open one with ON CONFLICT. Every claim
    holding the lock sees the same open generation, and every claim into an older one
    committed before it was closed: see docs/engine.md, "Dedup partitions".
    """
    if len(ids) != len(hashes):
        raise ValueError(f"{len(ids)} event ids but {len(hashes)} hashes")
    # A statement of its own: a statement's snapshot is taken when it starts, so the claim
    # must start after the lock is granted to see a switch that committed while it waited.
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", DEDUP_CLAIM_LOCK_KEY)
    # The lock is also the schema fence (shared.schema): read the revision under it.
    check_revision(await conn.fetchval("SELECT version_num FROM alembic_version"))
    # PostgreSQL sorts (COLLATE "C" = Python's code-point order, whatever the database's
    # collation): cheaper there than sorting the pairs in the consumer process. Only the ids
    # that were already there come back (~5 %): sending and decoding every inserted id cost
    # more than the anti-join that finds the others. The older generations are searched
    # with the ids as a run-time array (ARRAY(SELECT ...)): as a constant the planner
    # estimated 4,000 elements once per partition (~45 ms a batch).
    rows = await conn.fetch(
        """
        WITH cur AS MATERIALIZED (SELECT kpi_dedup_generation() AS g),
        old AS MATERIALIZED (
            SELECT event_id FROM processed_events
            WHERE event_id = ANY(ARRAY(SELECT unnest($1::text::text[])))
              AND generation < (SELECT g FROM cur)
        ),
        ins AS (
            INSERT INTO processed_events (event_id, payload_hash, generation)
            SELECT i, h, (SELECT g FROM cur)
            FROM unnest($1::text::text[], $2::text[]) AS u(i, h)
            WHERE NOT EXISTS (SELECT FROM old WHERE old.event_id = u.i)
            ORDER BY i COLLATE "C"
            ON CONFLICT DO NOTHING
            RETURNING event_id
        )
        SELECT i FROM unnest($1::text::text[]) AS u(i)
        WHERE NOT EXISTS (SELECT FROM ins WHERE ins.event_id = u.i)
        """,
        _text_array(ids),
        list(hashes),
    )
    known = {r[0] for r in rows}
    return {i for i in ids if i not in known}


async def purge_processed(conn: Conn, before: dt.datetime, limit: int) -> int:
    """Forget up to ``limit`` ids of the default partition first seen before ``before``.

    Ids land there only while no generation is open (see kpi_dedup_generation); the
    generations' partitions are dropped whole instead (drop_dedup_partition).
    """
    return int(
        await conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM processed_events_default WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM processed_events_default WHERE first_seen_at < $1
                    LIMIT $2))
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            before,
            limit,
        )
    )


async def stored_hashes(conn: Conn, ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT event_id, payload_hash FROM processed_events WHERE event_id = ANY($1::text[])",
        list(ids),
    )
    return {r["event_id"]: r["payload_hash"] for r in rows}


async def record_conflicts(conn: Conn, conflicts: Sequence[tuple[str, str]]) -> None:
    await conn.execute(
        """
        INSERT INTO event_conflicts (event_id, payload_hash)
        SELECT i, h FROM unnest($1::text[], $2::text[]) AS u(i, h)
        """,
        [c[0] for c in conflicts],
        [c[1] for c in conflicts],
    )


# -- state -----------------------------------------------------------------------------


async def lock_states(conn: Conn, table: str, key: str, ids: Iterable[str]) -> dict[str, Any]:
    """Create missing rows as ``{}`` then lock all rows in key order; returns parsed JSON.

    Creating first makes a concurrent first event of the same ticket wait for us instead
    of both transactions starting from an empty state (a lost update).
    """
    if table not in ("ticket_states", "training_sessions") or key not in (
        "ticket_id",
        "session_id",
    ):
        raise ValueError(f"unknown state table {table}.{key}")
    sorted_ids = sorted(set(ids))
    # Rows this statement created are ours (locked by the insert) and known to be empty:
    # only the others need reading and locking, which for a time-ordered stream (most
    # tickets new in their first batch) halves the rows read. The insert returns those
    # others (the anti-join), not the created ids: fewer rows to send and decode.
    # The read must stay a second statement: its fresh snapshot sees a row that a
    # concurrent transaction inserted and committed while this insert waited for it.
    known = await conn.fetch(
        f"""
        WITH ins AS (
            INSERT INTO {table} ({key}, state, updated_at)
            SELECT i, '{EMPTY_STATE}'::json, now() FROM unnest($1::text::text[]) AS u(i)
            ORDER BY i
            ON CONFLICT DO NOTHING
            RETURNING {key} AS id
        )
        SELECT i FROM unnest($1::text::text[]) AS u(i)
        WHERE NOT EXISTS (SELECT FROM ins WHERE ins.id = u.i)
        """,
        _text_array(sorted_ids),
    )
    existing = [r[0] for r in known]
    skip = set(existing)
    out: dict[str, Any] = {i: {} for i in sorted_ids if i not in skip}
    if existing:
        rows = await conn.fetch(
            f"""
            SELECT {key} AS id, state::text AS state FROM {table}
            WHERE {key} = ANY($1::text::text[]) ORDER BY {key} FOR UPDATE
            """,
            _text_array(existing),
        )
        for r in rows:
            out[r["id"]] = orjson.loads(r["state"])
    return out


async def save_states(conn: Conn, table: str, key: str, states: Mapping[str, bytes]) -> None:
    """Replace the (already locked) state rows."""
    if table not in ("ticket_states", "training_sessions") or key not in (
        "ticket_id",
        "session_id",
    ):
        raise ValueError(f"unknown state table {table}.{key}")
    ids = sorted(states)
    await conn.execute(
        f"""
        UPDATE {table} t SET state = u.s::json, updated_at = now()
        FROM unnest($1::text::text[], $2::text[]) AS u(i, s)
        WHERE t.{key} = u.i
        """,
        _text_array(ids),
        [states[i].decode() for i in ids],
    )


# -- aggregates ------------------------------------------------------------------------


async def ensure_specialists(conn: Conn, ids: Iterable[str]) -> None:
    """Specialists first seen in an event exist without a team until assigned."""
    await conn.execute(
        """
        INSERT INTO specialists (id) SELECT i FROM unnest($1::text[]) AS u(i) ORDER BY i
        ON CONFLICT DO NOTHING
        """,
        sorted(set(ids)),
    )


async def add_daily(conn: Conn, deltas: Mapping[DailyKey, tuple[float, int]]) -> None:
    """Apply deltas to kpi_daily in primary-key order (row locks taken in a global order)."""
    # Sorted by PostgreSQL, not here: see claim_events.
    who, days, metrics = _columns(list(deltas), 3)
    nums, dens = _columns(list(deltas.values()), 2)
    await conn.execute(
        """
        INSERT INTO kpi_daily (specialist_id, day, metric, num, den, updated_at)
        SELECT s, d, m, n, c, now()
        FROM unnest($1::text::text[], $2::date[], $3::text::text[], $4::float8[], $5::bigint[])
            AS u(s, d, m, n, c)
        ORDER BY s COLLATE "C", d, m COLLATE "C"
        ON CONFLICT (specialist_id, day, metric) DO UPDATE
        SET num = kpi_daily.num + excluded.num, den = kpi_daily.den + excluded.den,
            updated_at = excluded.updated_at
        """,
        _text_array(who),
        days,
        _text_array(metrics),
        nums,
        dens,
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to column lists for ``unnest`` (one C-level transpose instead of a pass per column)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


async def add_facts(conn: Conn, deltas: Mapping[FactKey, tuple[float, int]]) -> None:
    """Apply the same deltas per source; rows that cancel to 0/0 are removed."""
    # Sorted by PostgreSQL in primary-key order, not here: see claim_events.
    who, metrics, days, sources = _columns(list(deltas), 4)
    nums, dens = _columns(list(deltas.values()), 2)
    # Only rows that cancelled out come back: decoding every upserted row cost more than
    # the upsert itself.
    rows = await conn.fetch(
        """
        WITH up AS (
            INSERT INTO kpi_facts (specialist_id, metric, day, source, num, den)
            SELECT s, m, d, src, n, c
            FROM unnest($1::text::text[], $2::text::text[], $3::date[], $4::text::text[],
                        $5::float8[], $6::bigint[])
                AS u(s, m, d, src, n, c)
            -- Days whose facts KPI_LEDGER_RETENTION_DAYS dropped get none back (a late
            -- reopen would leave half of a fact); kpi_daily keeps counting them.
            WHERE d >= (SELECT coalesce(max(kept_from), '-infinity') FROM ledger_retention)
            ORDER BY s COLLATE "C", m COLLATE "C", d, src COLLATE "C"
            ON CONFLICT (specialist_id, metric, day, source) DO UPDATE
            SET num = kpi_facts.num + excluded.num, den = kpi_facts.den + excluded.den
            RETURNING specialist_id, metric, day, source, num, den
        )
        SELECT specialist_id, metric, day, source, num, den FROM up
        WHERE den = 0 AND abs(num) < 1e-9
        """,
        _text_array(who),
        _text_array(metrics),
        days,
        _text_array(sources),
        nums,
        dens,
    )
    # Float sums of hours may leave 1e-15 instead of 0; such a fact explains nothing.
    zero = sorted(
        (r["specialist_id"], r["metric"], r["day"], r["source"])
        for r in rows
        if r["den"] == 0 and abs(r["num"]) < 1e-9
    )
    if zero:
        await conn.execute(
            """
            DELETE FROM kpi_facts f USING unnest($1::text[], $2::text[], $3::date[], $4::text[])
                AS u(s, m, d, src)
            WHERE f.specialist_id = u.s AND f.metric = u.m AND f.day = u.d AND f.source = u.src
            """,
            [z[0] for z in zero],
            [z[1] for z in zero],
            [z[2] for z in zero],
            [z[3] for z in zero],
        )


async def set_issues(
    conn: Conn, added: Sequence[tuple[str, str]], removed: Sequence[tuple[str, str]]
) -> int:
    """Record new data-quality issues and drop fixed ones; returns how many were new."""
    count = 0
    if added:
        add = sorted(added)
        rows = await conn.fetch(
            """
            INSERT INTO data_quality_issues (source, issue, detected_at)
            SELECT s, i, now() FROM unnest($1::text[], $2::text[]) AS u(s, i) ORDER BY s, i
            ON CONFLICT DO NOTHING RETURNING source
            """,
            [a[0] for a in add],
            [a[1] for a in add],
        )
        count = len(rows)
    if removed:
        rem = sorted(removed)
        await conn.execute(
            """
            DELETE FROM data_quality_issues d USING unnest($1::text[], $2::text[]) AS u(s, i)
            WHERE d.source = u.s AND d.issue = u.i
            """,
            [r[0] for r in rem],
            [r[1] for r in rem],
        )
    return count


# -- rescore paging --------------------------------------------------------------------


async def stored_ticket_ids(
    conn: Conn, after: str, limit: int, since: dt.datetime | None = None
) -> list[str]:
    """The next ``limit`` ticket ids above ``after`` in key order (keyset paging on the
    primary key), only those whose state was written at or after ``since`` when given.

    updated_at has no index: the filter rides the key-order scan, one pass over the table
    for a whole run instead of a sort per page.
    """
    if since is None:
        rows = await conn.fetch(
            "SELECT ticket_id FROM ticket_states WHERE ticket_id > $1 ORDER BY ticket_id LIMIT $2",
            after,
            limit,
        )
    else:
        rows = await conn.fetch(
            """
            SELECT ticket_id FROM ticket_states WHERE ticket_id > $1 AND updated_at >= $3
            ORDER BY ticket_id LIMIT $2
            """,
            after,
            limit,
            since,
        )
    return [r[0] for r in rows]


async def count_stored_tickets(conn: Conn, since: dt.datetime | None = None) -> int:
    """How many tickets ``stored_ticket_ids`` pages through (for progress reporting)."""
    if since is None:
        return int(await conn.fetchval("SELECT count(*) FROM ticket_states"))
    return int(
        await conn.fetchval("SELECT count(*) FROM ticket_states WHERE updated_at >= $1", since)
    )
