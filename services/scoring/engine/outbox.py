"""SQL of the score outbox: batches queue specialists, the relay publishes and deletes them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from services.scoring.db import Conn
from services.scoring.engine.repository import _text_array

# Any constant works; it only has to be the same in every scoring process.
RELAY_LOCK_KEY = 0x6B70695F73636F72


async def enqueue_scores(conn: Conn, specialist_ids: Iterable[str], reason: str) -> None:
    """(Re)queue specialists for kpi.scores; a new version means "publish again".

    DO UPDATE (not DO NOTHING) so a relay that is publishing an older snapshot of the same
    specialist cannot delete this newer request.
    """
    ids = sorted(set(specialist_ids))
    if not ids:
        return
    await conn.execute(
        """
        INSERT INTO score_outbox (specialist_id, reason, enqueued_at)
        SELECT i, $2, now() FROM unnest($1::text::text[]) AS u(i) ORDER BY i
        ON CONFLICT (specialist_id) DO UPDATE
        SET version = nextval('score_outbox_version_seq'), reason = excluded.reason
        """,
        _text_array(ids),
        reason,
    )


async def enqueue_clock(conn: Conn, since: dt.date) -> int:
    """Queue every specialist with a bucket since ``since`` (reason "clock"); returns count."""
    rows = await conn.fetch(
        """
        INSERT INTO score_outbox (specialist_id, reason, enqueued_at)
        SELECT DISTINCT specialist_id, 'clock', now() FROM kpi_daily WHERE day >= $1
        ORDER BY specialist_id
        ON CONFLICT (specialist_id) DO NOTHING
        RETURNING specialist_id
        """,
        since,
    )
    return len(rows)


async def pending_scores(conn: Conn, limit: int) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(
        """
        SELECT specialist_id, reason, version FROM score_outbox
        ORDER BY enqueued_at, specialist_id LIMIT $1
        """,
        limit,
    )
    return [(r["specialist_id"], r["reason"], int(r["version"])) for r in rows]


async def delete_published(conn: Conn, published: Sequence[tuple[str, int]]) -> int:
    """Delete outbox rows still at the version that was published (locks in key order)."""
    items = sorted(published)
    rows = await conn.fetch(
        """
        WITH locked AS (
            SELECT o.specialist_id FROM score_outbox o
            JOIN unnest($1::text[], $2::bigint[]) AS u(s, v)
                ON o.specialist_id = u.s AND o.version = u.v
            ORDER BY o.specialist_id FOR UPDATE OF o
        )
        DELETE FROM score_outbox o USING locked l, unnest($1::text[], $2::bigint[]) AS u(s, v)
        WHERE o.specialist_id = l.specialist_id AND o.specialist_id = u.s AND o.version = u.v
        RETURNING o.specialist_id
        """,
        [i[0] for i in items],
        [i[1] for i in items],
    )
    return len(rows)
