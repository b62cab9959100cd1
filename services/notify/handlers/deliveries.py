"""The delivery log (API view, pages, one with its attempts) and resending a failed one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import outbox, queries
from services.notify import repository as repo
from services.notify.config import NotifyConfig
from services.notify.retry import RetryPolicy
from shared.webhooks import DIGEST_TYPE, INCIDENT_TYPE, REMINDER_TYPE


class DeliveryResult(Enum):
    OK = "ok"
    NOT_FOUND = "not_found"  # also another team's delivery: the caller cannot tell them apart
    NOT_FAILED = "not_failed"


def _item_out(item: Mapping[str, Any]) -> dict[str, Any]:
    """One line per notice: an alert's, or a platform incident's, a cycle reminder's or a team
    digest's (whose payloads have a type). A specialist's address is never shown, only who it
    was for."""
    payload = item["payload"]
    if payload.get("type") == DIGEST_TYPE:
        return {
            "type": DIGEST_TYPE,
            "digest_id": payload["digest_id"],
            "kind": "digest",
            "team_id": payload["team_id"],
            "period": payload["period"]["name"],
            "open_alerts": payload["open_alerts_total"],
        }
    if payload.get("type") == REMINDER_TYPE:
        return {
            "type": REMINDER_TYPE,
            "reminder_id": payload["reminder_id"],
            "kind": "reminder",
            "reminder_kind": payload["kind"],
            "audience": payload["audience"],
            "specialist_id": payload["specialist_id"],
            "name": payload["name"],
            "quarter": payload["quarter"],
            "due": payload["due"],
        }
    if payload.get("type") == INCIDENT_TYPE:
        return {
            "type": INCIDENT_TYPE,
            "incident_id": payload["incident_id"],
            "kind": item["kind"],
            "incident_kind": payload["kind"],
            "service": payload["service"],
            "summary": payload["summary"],
        }
    return {
        "alert_id": payload["alert_id"],
        "kind": item["kind"],
        "specialist_id": payload["specialist_id"],
        "name": item.get("name"),
        "kpi": payload["kpi"],
        "value": payload["value"],
        "qualified": payload["qualified"],
    }


def delivery_out(row: Mapping[str, Any], retry: RetryPolicy) -> dict[str, Any]:
    """API view of a delivery: the channel by name and kind (never its config), one line per
    alert it carries, and when its retry budget ends while it can still be retried."""
    status = row["status"]
    items = [_item_out(item) for item in row["items"]]
    return {
        "id": row["id"],
        "delivery_key": row["delivery_key"],
        "status": status,
        "channel": {
            "id": row["channel_id"],
            "name": row["channel_name"],
            "kind": row["channel_kind"],
        },
        "team_id": row["team_id"],
        "alert_ids": list(row["alert_ids"]),
        "items": items,
        "attempts": row["attempts"],
        "created_at": row["created_at"],
        "last_attempt_at": row["last_attempt_at"],
        "next_attempt_at": row["next_attempt_at"] if status == "pending" else None,
        "retry_until": None if status == "sent" else retry.deadline(row["budget_from"]),
        "sent_at": row["sent_at"],
        "last_error": row["last_error"],
        "resent_at": row["resent_at"],
        "resent_by": row["resent_by"],
        "resends": row["resends"],
    }


async def list_deliveries(
    session: AsyncSession,
    cfg: NotifyConfig,
    *,
    status: str | None,
    team_ids: Sequence[str] | None,
    cursor: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of deliveries, newest first, and the cursor of the next page (None: last)."""
    conn = await repo.raw_connection(session)
    rows = await queries.list_deliveries(
        conn, status=status, team_ids=team_ids, before_id=cursor, limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return [delivery_out(r, cfg.retry) for r in page], next_cursor


async def get_delivery(
    session: AsyncSession,
    cfg: NotifyConfig,
    delivery_id: int,
    can_see_team: Callable[[str | None], bool],
) -> tuple[DeliveryResult, dict[str, Any] | None]:
    """One delivery with every attempt it took (`attempt_log`), if the caller may see it."""
    conn = await repo.raw_connection(session)
    row = await queries.get_delivery(conn, delivery_id)
    if row is None or not can_see_team(row["team_id"]):
        return DeliveryResult.NOT_FOUND, None
    out = delivery_out(row, cfg.retry)
    out["attempt_log"] = (await queries.attempt_logs(conn, [delivery_id])).get(delivery_id, [])
    return DeliveryResult.OK, out


async def resend_delivery(
    session: AsyncSession,
    cfg: NotifyConfig,
    delivery_id: int,
    who: str,
    now: datetime,
    can_see_team: Callable[[str | None], bool],
) -> tuple[DeliveryResult, dict[str, Any] | None]:
    """Put a failed delivery back in the outbox: same row and key, a fresh retry budget."""
    conn = await repo.raw_connection(session)
    row = await queries.get_delivery(conn, delivery_id, lock=True)
    if row is None or not can_see_team(row["team_id"]):
        return DeliveryResult.NOT_FOUND, None
    if row["status"] != "failed" or not await outbox.resend_delivery(conn, delivery_id, who, now):
        return DeliveryResult.NOT_FAILED, None
    resent = await queries.get_delivery(conn, delivery_id)
    assert resent is not None  # locked above, in this transaction
    return DeliveryResult.OK, delivery_out(resent, cfg.retry)
