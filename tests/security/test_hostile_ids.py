"""Hostile ids end to end: CJK, emoji, RTL, combining and zero-width characters, formula
prefixes and URL metacharacters in every id go through ingest, scoring and every read and
export route; control characters, NUL and surrogates are refused naming the field."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.security.conftest import Platform

# Accepted by the id rule: each must be counted and readable everywhere.
ODD_IDS = [
    "李娜-客服",
    "🙂agent",
    "مرحبا",
    "e\u0301",
    "zero\u200bwidth",
    '=HYPERLINK("http://x","y")',
    "+1",
    "-2+3",
    "@SUM(1)",
    "a b",
    "a/b",
    "50%",
    "a?b#c",
    "..",
    "<script>x</script>",
    "x" * 128,
]
# Refused by the id rule (C0, C1, DEL, NUL, a lone surrogate as a JSON escape).
REFUSED = ["a\\u0001b", "a\\u007fb", "a\\u0085b", "a\\u0000b", "a\\ud800b", "tab\\tid"]


def _url(base: str, specialist: str, suffix: str = "") -> str:
    return f"{base}/v1/specialists/{quote(specialist, safe='')}{suffix}"


def _events(specialist: str, tag: str) -> list[dict[str, object]]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    at = [(now - dt.timedelta(minutes=m)).isoformat() for m in (50, 40, 30, 20)]
    stem = specialist[:100]  # ids are at most 128 characters; the specialist's may be all
    ticket = f"{stem}-t-{tag}"
    base = {"ticket_id": ticket, "specialist_id": specialist}
    return [
        {"event_id": f"{stem}:c:{tag}", "type": "ticket.created", "occurred_at": at[0],
         "channel": specialist, **base},
        {"event_id": f"{stem}:r:{tag}", "type": "ticket.first_response",
         "occurred_at": at[1], **base},
        {"event_id": f"{stem}:x:{tag}", "type": "ticket.closed", "occurred_at": at[2],
         "resolved": True, **base},
        {"event_id": f"{stem}:s:{tag}", "type": "survey.csat", "occurred_at": at[3],
         "score": 5, **base},
    ]  # fmt: skip


def _peak_mb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) // 1024


@pytest.mark.timeout(240)
def test_odd_ids_are_counted_and_readable_everywhere(platform: Platform) -> None:
    admin = platform.headers("admin")
    ingest, scoring = platform.urls["ingest"], platform.urls["scoring"]
    tag = uuid.uuid4().hex[:6]
    team = f"队-{tag}/=x"
    r = httpx.put(f"{scoring}/v1/teams/{quote(team, safe='')}", headers=admin,
                  json={"name": team, "supervisor": None})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    people = [f"{s}{tag}" if len(s) < 120 else s[:-6] + tag for s in ODD_IDS]
    for person in people:
        r = httpx.put(_url(scoring, person), headers=admin, json={"name": person, "team_id": team})
        assert r.status_code in (200, 201), (person, r.status_code, r.text[:300])
    events = [e for p in people for e in _events(p, tag)]
    r = httpx.post(ingest + "/v1/events", json=events, headers=admin, timeout=30)
    assert r.status_code == 202, r.text[:500]
    assert r.json()["accepted"] == len(events), r.text[:500]

    deadline = time.monotonic() + 120
    pending = set(people)
    while pending and time.monotonic() < deadline:
        for person in sorted(pending):
            got = httpx.get(_url(scoring, person, "/kpis"), params={"window": "1d"}, headers=admin)
            assert got.status_code in (200, 404), (person, got.status_code, got.text[:300])
            csat = (
                got.json().get("kpis", {}).get("customer_satisfaction", {})
                if got.is_success
                else {}
            )
            if csat.get("denominator"):
                pending.discard(person)
        time.sleep(0.2)
    assert not pending, f"never counted: {sorted(pending)}"

    quarter = f"{dt.date.today().year}Q{(dt.date.today().month - 1) // 3 + 1}"
    reads = [
        (_url(scoring, p, suffix), params)
        for p in people
        for suffix, params in (
            ("", {}),
            ("/kpis", {"window": "30d"}),
            ("/kpis/customer_satisfaction/history", {}),
            ("/kpis/customer_satisfaction/events", {}),
        )
    ]
    reads += [
        (f"{scoring}/v1/teams/{quote(team, safe='')}/kpis", {"window": "1d"}),
        (f"{scoring}/v1/teams/{quote(team, safe='')}/kpis/customer_satisfaction/history", {}),
        (f"{scoring}/v1/leaderboard", {"kpi": "customer_satisfaction", "team": team}),
        (f"{scoring}/v1/appraisals/{quarter}", {"team": team}),
        (f"{scoring}/v1/appraisals/{quarter}", {"team": team, "format": "csv"}),
        (f"{scoring}/v1/appraisals/{quarter}", {"team": team, "format": "xlsx"}),
    ]
    failures = []
    for url, params in reads:
        got = httpx.get(url, params=params, headers=admin, timeout=30)
        if got.status_code != 200:
            failures.append(f"{got.status_code} {url} {params}: {got.text[:200]}")
    assert not failures, "\n".join(failures)
    csv = httpx.get(f"{scoring}/v1/appraisals/{quarter}", headers=admin,
                    params={"team": team, "format": "csv"}).text  # fmt: skip
    assert "'=HYPERLINK" in csv and "'@SUM(1)" in csv and "'+1" in csv
    peaks = {svc.name: _peak_mb(svc.proc.pid) for svc in platform.services if svc.proc}
    print(f"peak RSS after odd ids (MB): {peaks}")


@pytest.mark.parametrize("bad", REFUSED)
def test_refused_ids_name_the_field_and_the_reason(platform: Platform, bad: str) -> None:
    admin = {**platform.headers("admin"), "Content-Type": "application/json"}
    ingest = platform.urls["ingest"]
    event = (
        f'"event_id":"ok-{uuid.uuid4().hex[:6]}","type":"survey.csat",'
        f'"occurred_at":"2026-12-01T10:00:00Z","specialist_id":"{bad}","score":5'
    )
    body = "[{" + event + "}]"
    r = httpx.post(ingest + "/v1/events", content=body.encode(), headers=admin, timeout=30)
    assert r.status_code in (400, 422), (r.status_code, r.text[:500])
    assert "specialist_id" in r.text, r.text[:500]
