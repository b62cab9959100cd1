"""SQL of the appraisal cycle: feedback meetings, acknowledgements and comments, decisions,
plan progress notes.

Reads take a ``Db`` (the read pool or a connection); writes take the ``Conn`` of the route's
``ReadDb.transaction()``, which commits them in one place. Timestamps come from the app's
clock (``Appraiser.now``), so a test's fixed clock is what is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.scoring.appraisal.cycle import MeetingRecord
from services.scoring.db import Conn, Db, Record

# ---------------------------------------------------------------------------
# Feedback meetings
# ---------------------------------------------------------------------------

_MEETING_COLUMNS = (
    "id, specialist_id, quarter, status, met_on, scheduled_for, held_on, "
    "participants::text AS participants, notes, agreed_actions::text AS agreed_actions, "
    "created_by, created_at, updated_by, updated_at, acknowledged_at"
)


@dataclass(frozen=True)
class MeetingRow:
    id: int
    specialist_id: str
    record: MeetingRecord
    met_on: dt.date
    created_by: str
    created_at: dt.datetime
    updated_by: str | None
    updated_at: dt.datetime | None
    acknowledged_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "id": self.id,
            "specialist_id": self.specialist_id,
            "quarter": r.quarter,
            "status": r.status,
            "date": self.met_on,
            "scheduled_for": r.scheduled_for,
            "held_on": r.held_on,
            "participants": list(r.participants),
            "notes": r.notes,
            "agreed_actions": list(r.agreed_actions),
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
            "acknowledged_at": self.acknowledged_at,
        }


def _meeting(r: Record) -> MeetingRow:
    record = MeetingRecord(
        status=r["status"],
        quarter=r["quarter"],
        scheduled_for=r["scheduled_for"],
        held_on=r["held_on"],
        participants=tuple(orjson.loads(r["participants"])),
        notes=r["notes"],
        agreed_actions=tuple(orjson.loads(r["agreed_actions"])),
    )
    return MeetingRow(
        r["id"],
        r["specialist_id"],
        record,
        r["met_on"],
        r["created_by"],
        r["created_at"],
        r["updated_by"],
        r["updated_at"],
        r["acknowledged_at"],
    )


def _json(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


async def insert_meeting(
    conn: Conn, specialist_id: str, m: MeetingRecord, met_on: dt.date, by: str
) -> MeetingRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO feedback_meetings
            (specialist_id, quarter, status, met_on, scheduled_for, held_on, participants,
             notes, agreed_actions, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10)
        RETURNING {_MEETING_COLUMNS}
        """,
        specialist_id,
        m.quarter,
        m.status,
        met_on,
        m.scheduled_for,
        m.held_on,
        _json(m.participants),
        m.notes,
        _json(m.agreed_actions),
        by,
    )
    return _meeting(row)


async def get_meeting(
    db: Db, specialist_id: str, meeting_id: int, *, for_update: bool = False
) -> MeetingRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await db.fetchrow(
        f"SELECT {_MEETING_COLUMNS} FROM feedback_meetings "
        f"WHERE id = $1 AND specialist_id = $2{lock}",
        meeting_id,
        specialist_id,
    )
    return None if row is None else _meeting(row)


async def update_meeting(
    conn: Conn,
    meeting_id: int,
    m: MeetingRecord,
    met_on: dt.date,
    by: str,
    at: dt.datetime,
    keep_acknowledgement: bool,
) -> MeetingRow:
    row = await conn.fetchrow(
        f"""
        UPDATE feedback_meetings
        SET quarter = $2, status = $3, met_on = $4, scheduled_for = $5, held_on = $6,
            participants = $7::jsonb, notes = $8, agreed_actions = $9::jsonb,
            updated_by = $10, updated_at = $11,
            acknowledged_at = CASE WHEN $12 THEN acknowledged_at END
        WHERE id = $1
        RETURNING {_MEETING_COLUMNS}
        """,
        meeting_id,
        m.quarter,
        m.status,
        met_on,
        m.scheduled_for,
        m.held_on,
        _json(m.participants),
        m.notes,
        _json(m.agreed_actions),
        by,
        at,
        keep_acknowledgement,
    )
    return _meeting(row)


async def acknowledge_meeting(conn: Conn, meeting_id: int, at: dt.datetime) -> MeetingRow:
    """The first acknowledgement is kept: acknowledging again changes nothing."""
    row = await conn.fetchrow(
        f"""
        UPDATE feedback_meetings SET acknowledged_at = coalesce(acknowledged_at, $2)
        WHERE id = $1
        RETURNING {_MEETING_COLUMNS}
        """,
        meeting_id,
        at,
    )
    return _meeting(row)


async def list_meetings(db: Db, specialist_id: str, quarter: str | None) -> list[MeetingRow]:
    rows = await db.fetch(
        f"""
        SELECT {_MEETING_COLUMNS} FROM feedback_meetings
        WHERE specialist_id = $1 AND ($2::text IS NULL OR quarter = $2)
        ORDER BY met_on, id
        """,
        specialist_id,
        quarter,
    )
    return [_meeting(r) for r in rows]


async def quarter_meetings(
    db: Db, quarter: str, ids: Collection[str]
) -> dict[str, list[tuple[int, str, dt.date]]]:
    """(id, status, date) of each specialist's meetings linked to ``quarter``."""
    if not ids:
        return {}
    rows = await db.fetch(
        """
        SELECT specialist_id, id, status, met_on FROM feedback_meetings
        WHERE quarter = $1 AND specialist_id = ANY($2::text[])
        """,
        quarter,
        sorted(set(ids)),
    )
    out: dict[str, list[tuple[int, str, dt.date]]] = {}
    for r in rows:
        out.setdefault(r["specialist_id"], []).append((r["id"], r["status"], r["met_on"]))
    return out


# ---------------------------------------------------------------------------
# The specialist's acknowledgement and comment
# ---------------------------------------------------------------------------

_RESPONSE_COLUMNS = (
    "r.quarter, r.specialist_id, r.acknowledged_at, r.comment, r.commented_at, r.comment_updated_at"
)


@dataclass(frozen=True)
class Response:
    acknowledged_at: dt.datetime | None
    comment: str | None
    commented_at: dt.datetime | None
    comment_updated_at: dt.datetime | None

    def comment_json(self) -> dict[str, Any] | None:
        if self.comment is None:
            return None
        return {
            "text": self.comment,
            "commented_at": self.commented_at,
            "updated_at": self.comment_updated_at,
        }


def _response(r: Record) -> Response:
    return Response(r["acknowledged_at"], r["comment"], r["commented_at"], r["comment_updated_at"])


async def acknowledge_appraisal(
    conn: Conn, quarter: str, specialist_id: str, at: dt.datetime
) -> Response:
    """The first acknowledgement is kept: acknowledging again changes nothing."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO appraisal_responses AS r (quarter, specialist_id, acknowledged_at)
        VALUES ($1, $2, $3)
        ON CONFLICT (quarter, specialist_id) DO UPDATE
            SET acknowledged_at = coalesce(r.acknowledged_at, excluded.acknowledged_at)
        RETURNING {_RESPONSE_COLUMNS}
        """,
        quarter,
        specialist_id,
        at,
    )
    return _response(row)


async def set_comment(
    conn: Conn, quarter: str, specialist_id: str, text: str, at: dt.datetime
) -> Response:
    """The one comment, replaced on each call (``commented_at`` stays the first time)."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO appraisal_responses AS r
            (quarter, specialist_id, comment, commented_at, comment_updated_at)
        VALUES ($1, $2, $3, $4, $4)
        ON CONFLICT (quarter, specialist_id) DO UPDATE
            SET comment = excluded.comment,
                commented_at = coalesce(r.commented_at, excluded.commented_at),
                comment_updated_at = excluded.comment_updated_at
        RETURNING {_RESPONSE_COLUMNS}
        """,
        quarter,
        specialist_id,
        text,
        at,
    )
    return _response(row)


async def responses(db: Db, quarter: str, ids: Collection[str]) -> dict[str, Response]:
    if not ids:
        return {}
    rows = await db.fetch(
        f"""
        SELECT {_RESPONSE_COLUMNS} FROM appraisal_responses r
        WHERE r.quarter = $1 AND r.specialist_id = ANY($2::text[])
        """,
        quarter,
        sorted(set(ids)),
    )
    return {r["specialist_id"]: _response(r) for r in rows}


# ---------------------------------------------------------------------------
# Incentive decisions (every one kept; the latest is the current decision)
# ---------------------------------------------------------------------------

_DECISION_COLUMNS = "id, specialist_id, type, amount, level, note, decided_by, decided_at"


def _decision(r: Record) -> dict[str, Any]:
    return {
        "id": r["id"],
        "type": r["type"],
        "amount": r["amount"],
        "level": r["level"],
        "note": r["note"],
        "decided_by": r["decided_by"],
        "decided_at": r["decided_at"],
    }


async def insert_decision(
    conn: Conn,
    quarter: str,
    specialist_id: str,
    kind: str,
    amount: float | None,
    level: str | None,
    note: str,
    by: str,
    at: dt.datetime,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        INSERT INTO appraisal_decisions
            (quarter, specialist_id, type, amount, level, note, decided_by, decided_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING {_DECISION_COLUMNS}
        """,
        quarter,
        specialist_id,
        kind,
        amount,
        level,
        note,
        by,
        at,
    )
    return _decision(row)


async def decision_history(db: Db, quarter: str, specialist_id: str) -> list[dict[str, Any]]:
    """Every decision recorded for the appraisal, the current (latest) first."""
    rows = await db.fetch(
        f"""
        SELECT {_DECISION_COLUMNS} FROM appraisal_decisions
        WHERE quarter = $1 AND specialist_id = $2
        ORDER BY id DESC
        """,
        quarter,
        specialist_id,
    )
    return [_decision(r) for r in rows]


async def current_decisions(
    db: Db, quarter: str, ids: Collection[str]
) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = await db.fetch(
        f"""
        SELECT DISTINCT ON (specialist_id) {_DECISION_COLUMNS} FROM appraisal_decisions
        WHERE quarter = $1 AND specialist_id = ANY($2::text[])
        ORDER BY specialist_id, id DESC
        """,
        quarter,
        sorted(set(ids)),
    )
    return {r["specialist_id"]: _decision(r) for r in rows}


# ---------------------------------------------------------------------------
# Plan progress notes (append-only)
# ---------------------------------------------------------------------------

_NOTE_COLUMNS = "id, specialist_id, quarter, text, author, author_role, created_at"


def _note(r: Record) -> dict[str, Any]:
    return {
        "id": r["id"],
        "text": r["text"],
        "author": r["author"],
        "author_role": r["author_role"],
        "created_at": r["created_at"],
    }


async def add_progress_note(
    conn: Conn,
    specialist_id: str,
    quarter: str,
    text: str,
    author: str,
    role: str,
    at: dt.datetime,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        INSERT INTO plan_progress_notes
            (specialist_id, quarter, text, author, author_role, created_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING {_NOTE_COLUMNS}
        """,
        specialist_id,
        quarter,
        text,
        author,
        role,
        at,
    )
    return _note(row)


async def progress_notes(
    db: Db, plans: Collection[tuple[str, str]]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each plan's (specialist_id, quarter) progress log, oldest first."""
    if not plans:
        return {}
    ordered = sorted(set(plans))
    rows = await db.fetch(
        f"""
        SELECT {_NOTE_COLUMNS} FROM plan_progress_notes
        WHERE (specialist_id, quarter) IN (
            SELECT * FROM unnest($1::text[], $2::text[])
        )
        ORDER BY id
        """,
        [p[0] for p in ordered],
        [p[1] for p in ordered],
    )
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["specialist_id"], r["quarter"]), []).append(_note(r))
    return out
