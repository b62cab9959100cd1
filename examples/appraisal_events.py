"""Print 2026Q3 helpdesk events (JSON array) for the README quarterly-appraisal walk-through."""

from __future__ import annotations

import datetime as dt
import json
import sys

CN = dt.timezone(dt.timedelta(hours=8))


def ts(day: dt.date, hour: int, minute: int = 0) -> str:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=CN).isoformat()


def main() -> None:
    out: list[dict[str, object]] = []

    def add(eid: str, kind: str, at: str, **fields: object) -> None:
        out.append({"event_id": eid, "type": kind, "occurred_at": at, **fields})

    # s-42: tickets opened Friday 17:00, answered Monday 10:00 (65 calendar hours, 2 business
    # hours; the one of 18 Sep spans the 调休 Sunday 20 Sep), all resolved and followed up.
    for i in range(12):
        fri = dt.date(2026, 7, 3) + dt.timedelta(weeks=i)
        mon, tue = fri + dt.timedelta(days=3), fri + dt.timedelta(days=4)
        t = f"T42-{i}"
        add(f"{t}-c", "ticket.created", ts(fri, 17), ticket_id=t, specialist_id="s-42")
        add(f"{t}-r", "ticket.first_response", ts(mon, 10), ticket_id=t, specialist_id="s-42")
        add(f"{t}-x", "ticket.closed", ts(mon, 11), ticket_id=t, specialist_id="s-42",
            resolved=True)  # fmt: skip
        add(f"{t}-f", "ticket.followup", ts(tue, 10), ticket_id=t, specialist_id="s-42")
        add(f"{t}-s", "survey.csat", ts(tue, 12), ticket_id=t, score=5)
    # s-43: same-day answers, but only 8 of 10 tickets resolved (0.80 < 0.90).
    for i in range(10):
        tue = dt.date(2026, 7, 7) + dt.timedelta(weeks=i)
        t = f"T43-{i}"
        add(f"{t}-c", "ticket.created", ts(tue, 9), ticket_id=t, specialist_id="s-43")
        add(f"{t}-r", "ticket.first_response", ts(tue, 13, 30), ticket_id=t,
            specialist_id="s-43")  # fmt: skip
        add(f"{t}-x", "ticket.closed", ts(tue, 16), ticket_id=t, specialist_id="s-43",
            resolved=i < 8)  # fmt: skip
        add(f"{t}-s", "survey.csat", ts(tue, 17), ticket_id=t, score=4)
    for who in ("s-42", "s-43"):
        for i in range(5):
            add(f"A-{who}-{i}", "record.audited", ts(dt.date(2026, 8, 3 + i), 15),
                specialist_id=who, accurate=True)  # fmt: skip
        for i in range(3):
            add(f"P-{who}-{i}", "survey.peer_review", ts(dt.date(2026, 9, 1 + i), 15),
                specialist_id=who, reviewer_id=f"peer-{i}", score=5)  # fmt: skip
    for i in range(3):  # a training s-42 gave, rated 5 by three attendees
        add(f"TR-{i}", "survey.training", ts(dt.date(2026, 8, 13), 18), session_id="TR-0812",
            specialist_id="s-42", session_at=ts(dt.date(2026, 8, 12), 14), score=5)  # fmt: skip
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
