"""End-of-run checks against a reference recomputed from the generated events."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from chaos.receiver import Delivery
from services.scoring.kpi.grading import KpiValue, evaluate_all
from services.scoring.kpi.windows import Window, parse_window, quarter_of
from shared.catalogue import AVG_RESPONSE_TIME_HOURS
from shared.deadletter import decode_original
from shared.events import Event, encode_event
from tests.reference import METRICS, reference_sums

EPS = 1e-6
Sums = dict[tuple[str, date, str], tuple[float, int]]


def payload_hash(event: Event) -> str:
    import hashlib

    return hashlib.sha256(encode_event(event)).hexdigest()


def _nonzero(sums: dict[Any, tuple[float, int]]) -> dict[Any, tuple[float, int]]:
    return {k: v for k, v in sums.items() if v[1] != 0 or abs(v[0]) > EPS}


# -- events: lost, unexpected, which version of a conflicting id counts ------------------


async def effective_events(
    conn: asyncpg.Connection, delivered: Sequence[Event], prefix: str
) -> tuple[list[Event], dict[str, Any]]:
    """The version of every event id the database kept, plus lost/unexpected figures."""
    versions: dict[str, dict[str, Event]] = defaultdict(dict)
    for e in delivered:
        versions[e.event_id].setdefault(payload_hash(e), e)
    rows = await conn.fetch(
        "SELECT event_id, payload_hash FROM processed_events WHERE event_id LIKE $1",
        prefix + "%",
    )
    stored = {r[0]: r[1].strip() for r in rows}
    lost = sorted(set(versions) - set(stored))
    unexpected = sorted(set(stored) - set(versions))
    chosen: list[Event] = []
    wrong_version = []
    for event_id, by_hash in versions.items():
        digest = stored.get(event_id)
        if digest is None:
            continue
        if digest not in by_hash:
            wrong_version.append(event_id)
            continue
        chosen.append(by_hash[digest])
    conflicts = await conn.fetchval(
        "SELECT count(DISTINCT event_id) FROM event_conflicts WHERE event_id LIKE $1",
        prefix + "%",
    )
    conflicting_ids = sum(1 for v in versions.values() if len(v) > 1)
    figures = {
        "unique_valid_events": len(versions),
        "events_with_effect": len(stored),
        "lost": len(lost),
        "lost_sample": lost[:10],
        "unexpected_events": len(unexpected) + len(wrong_version),
        "conflicting_ids_generated": conflicting_ids,
        "conflicting_ids_recorded": int(conflicts or 0),
    }
    return chosen, figures


# -- KPIs: per-day cells, windows, REST -------------------------------------------------


def window_totals(
    sums: Sums, specialists: Iterable[str], window: Window
) -> dict[tuple[str, str], tuple[float, int]]:
    out = {(s, m): (0.0, 0) for s in specialists for m in METRICS}
    for (who, day, metric), (num, den) in sums.items():
        if window.start <= day <= window.end and (who, metric) in out:
            n, d = out[(who, metric)]
            out[(who, metric)] = (n + num, d + den)
    return out


def windows_for(today: date) -> list[Window]:
    year, q = quarter_of(today)
    prev = f"{year - 1}Q4" if q == 1 else f"{year}Q{q - 1}"
    names = ["1d", "7d", "30d", "90d", "400d", "qtd", prev]
    return [parse_window(n, today) for n in names]


async def check_kpis(
    conn: asyncpg.Connection,
    events: list[Event],
    tz: tzinfo,
    specialists: Sequence[str],
    today: date,
    scoring_url: str,
    token: str,
) -> tuple[Sums, dict[str, Any]]:
    want = reference_sums(events, tz)
    rows = await conn.fetch("SELECT specialist_id, day, metric, num, den FROM kpi_daily")
    got: Sums = {(r[0], r[1], r[2]): (float(r[3]), int(r[4])) for r in rows}
    g, w = _nonzero(got), _nonzero(want)
    mismatched_days, over = [], 0
    for key in sorted(g.keys() | w.keys()):
        gn, gd = g.get(key, (0.0, 0))
        wn, wd = w.get(key, (0.0, 0))
        if gd != wd or abs(gn - wn) > EPS:
            mismatched_days.append((key, (gn, gd), (wn, wd)))
            over += gd > wd
    facts_off = await conn.fetchval(
        """
        SELECT count(*) FROM kpi_daily d
        LEFT JOIN (SELECT specialist_id, day, metric, sum(num) AS num, sum(den) AS den
                   FROM kpi_facts GROUP BY 1, 2, 3) f USING (specialist_id, day, metric)
        WHERE d.den <> coalesce(f.den, 0) OR abs(d.num - coalesce(f.num, 0)) > 1e-6
        """
    )
    window_cells = window_mismatches = 0
    window_samples: list[Any] = []
    for window in windows_for(today):
        ref = window_totals(want, specialists, window)
        db_rows = await conn.fetch(
            "SELECT specialist_id, metric, sum(num), sum(den) FROM kpi_daily "
            "WHERE day BETWEEN $1 AND $2 GROUP BY 1, 2",
            window.start,
            window.end,
        )
        db = {(r[0], r[1]): (float(r[2]), int(r[3])) for r in db_rows}
        for key, (num, den) in ref.items():
            gn, gd = db.get(key, (0.0, 0))
            window_cells += 1
            if gd != den or abs(gn - num) > EPS:
                window_mismatches += 1
                window_samples.append((window.name, key, (gn, gd), (num, den)))
    rest_cells, rest_mismatches, rest_samples = await _check_rest(
        want, specialists, today, scoring_url, token
    )
    figures = {
        "day_cells": len(g.keys() | w.keys()),
        "day_mismatches": len(mismatched_days),
        "day_mismatch_sample": [str(m) for m in mismatched_days[:5]],
        "duplicate_effects": over,
        "facts_vs_daily_mismatches": int(facts_off or 0),
        "window_cells": window_cells,
        "window_mismatches": window_mismatches,
        "window_mismatch_sample": [str(m) for m in window_samples[:5]],
        "rest_cells": rest_cells,
        "rest_mismatches": rest_mismatches,
        "rest_mismatch_sample": rest_samples[:5],
        "mismatches": (
            len(mismatched_days) + window_mismatches + rest_mismatches + int(facts_off or 0)
        ),
    }
    return want, figures


async def _check_rest(
    want: Sums, specialists: Sequence[str], today: date, url: str, token: str
) -> tuple[int, int, list[str]]:
    cells = bad = 0
    samples: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=20) as client:
        for name in ("30d", "qtd"):
            window = parse_window(name, today)
            ref = window_totals(want, specialists, window)
            for who in specialists:
                r = await client.get(
                    f"/v1/specialists/{who}/kpis",
                    params={"window": name, "as_of": today.isoformat()},
                )
                if r.status_code != 200:
                    bad += 1
                    samples.append(f"{who} {name}: HTTP {r.status_code}")
                    continue
                for metric, block in r.json()["kpis"].items():
                    num, den = ref[(who, metric)]
                    cells += 1
                    got_num = float(block["numerator"] or 0)
                    got_den = block["denominator"]
                    ok = abs(got_num - num) <= EPS and (got_den is None or got_den == den)
                    if not ok:
                        bad += 1
                        samples.append(f"{who} {name} {metric}: {block} vs {(num, den)}")
    return cells, bad, samples


# -- dead letters ------------------------------------------------------------------------


def check_deadletters(records: list[bytes], markers: set[str], prefix: str) -> dict[str, Any]:
    pattern = re.compile(re.escape(prefix).encode() + rb"bad[hk]\d+")
    seen: dict[str, int] = defaultdict(int)
    foreign = 0
    for value in records:
        try:
            original = decode_original(orjson.loads(value))
        except (ValueError, orjson.JSONDecodeError):
            foreign += 1
            continue
        found = pattern.search(original)
        if found is None:
            foreign += 1
        else:
            seen[found.group().decode()] += 1
    got = set(seen)
    return {
        "malformed_sent": len(markers),
        "deadletter_records": len(records),
        "deadlettered_distinct": len(got & markers),
        "deadletter_missing": len(markers - got),
        "deadletter_unexpected": foreign + len(got - markers),
        "deadletter_redelivered": sum(n - 1 for n in seen.values()),
    }


def check_poison(
    sent: dict[str, tuple[str, bytes, int, int]],
    keys: list[bytes | None],
    values: list[bytes],
) -> dict[str, Any]:
    """Each poison record dead-lettered exactly once, with its bytes, place and reason."""
    seen: dict[str, int] = defaultdict(int)
    bad: list[str] = []
    for key, value in zip(keys, values, strict=True):
        marker = (key or b"").decode(errors="replace")
        if marker not in sent:
            continue
        seen[marker] += 1
        kind, raw, partition, offset = sent[marker]
        try:
            record = orjson.loads(value)
            original = decode_original(record)
        except (ValueError, orjson.JSONDecodeError) as exc:
            bad.append(f"{kind}: unreadable dead letter ({exc})")
            continue
        source = record.get("source") or {}
        problems = [
            name
            for name, ok in (
                ("original", original == raw),
                ("topic", source.get("topic") == "kpi.events"),
                ("partition", source.get("partition") == partition),
                ("offset", source.get("offset") == offset),
                ("reason", bool(record.get("reason"))),
                ("code", bool(record.get("code"))),
                ("error detail", bool(record.get("exception") or record.get("errors"))),
            )
            if not ok
        ]
        if problems:
            bad.append(f"{kind}: {', '.join(problems)} wrong")
    by_kind: dict[str, int] = defaultdict(int)
    for marker, n in seen.items():
        by_kind[sent[marker][0]] += n
    return {
        "poison_sent": len(sent),
        "poison_kinds": sorted({k for k, *_ in sent.values()}),
        "poison_deadlettered": len(seen),
        "poison_missing": len(set(sent) - set(seen)),
        "poison_missing_kinds": sorted({sent[m][0] for m in set(sent) - set(seen)}),
        "poison_duplicates": sum(n - 1 for n in seen.values()),
        "poison_bad_records": len(bad),
        "poison_bad_sample": bad[:5],
        "poison_deadletters_by_kind": dict(sorted(by_kind.items())),
    }


# -- alerts ------------------------------------------------------------------------------


def _clearly_ok(value: KpiValue, key: str, ratio_margin: float, hours_margin: float) -> bool:
    """Far enough on the good side that hysteresis cannot keep an alert open."""
    if value.grade in (None, "insufficient_data") or value.value is None:
        return True
    line = value.qualified
    if line is None:
        return True
    if key == AVG_RESPONSE_TIME_HOURS:
        return float(value.value) <= line - hours_margin - EPS
    return float(value.value) >= line + ratio_margin + EPS


async def check_alerts(
    conn: asyncpg.Connection,
    deliveries: list[Delivery],
    want: Sums,
    specialists: Sequence[str],
    today: date,
    ratio_margin: float = 0.02,
    hours_margin: float = 1.0,
) -> dict[str, Any]:
    bodies: dict[str, set[bytes]] = defaultdict(set)
    keys_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in deliveries:
        bodies[d.key].add(d.body)
        for item in d.items():
            keys_of[(item["alert_id"], item["status"])].add(d.key)
    delivered = set(keys_of)
    expected_rows = await conn.fetch(
        "SELECT alert_id, transition FROM alert_events "
        "WHERE transition IN ('firing', 'resolved', 'reminder')"
    )
    expected = {(r[0], "resolved" if r[1] == "resolved" else "firing") for r in expected_rows}
    missed = sorted(expected - delivered)
    alerts = await conn.fetch("SELECT alert_id, specialist_id, kpi, episode, status FROM alerts")
    latest: dict[tuple[str, str], asyncpg.Record] = {}
    for a in alerts:
        k = (a["specialist_id"], a["kpi"])
        if k not in latest or a["episode"] > latest[k]["episode"]:
            latest[k] = a
    window = parse_window("30d", today)
    ref = window_totals(want, specialists, window)
    final_errors: list[str] = []
    expected_open = 0
    for who in specialists:
        values = evaluate_all({m: ref[(who, m)] for m in METRICS}, window)
        for key, value in values.items():
            if value.grade is None:
                continue
            a = latest.get((who, key))
            fired = a is not None and (a["alert_id"], "firing") in delivered
            resolved = a is not None and (a["alert_id"], "resolved") in delivered
            if value.grade == "unqualified":
                expected_open += 1
                ok = a is not None and a["status"] == "firing" and fired and not resolved
            elif _clearly_ok(value, key, ratio_margin, hours_margin):
                ok = a is None or (a["status"] == "resolved" and resolved)
            else:  # inside the hysteresis band: either, as long as receivers were told
                ok = a is None or (
                    (a["status"] == "firing" and fired and not resolved)
                    or (a["status"] == "resolved" and resolved)
                )
            if not ok:
                status = None if a is None else a["status"]
                final_errors.append(
                    f"{who}/{key}: grade {value.grade} value {value.value} alert {status} "
                    f"fired={fired} resolved={resolved}"
                )
    failed = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'failed'")
    total = len(deliveries)
    distinct_keys = len(bodies)
    return {
        "expected_transitions": len(expected),
        "delivered_transitions": len(expected & delivered),
        "missed": len(missed) + len(final_errors),
        "missed_transitions_sample": [str(m) for m in missed[:5]],
        "final_state_errors": final_errors[:10],
        "expected_open_alerts": expected_open,
        "deliveries_received": total,
        "delivery_keys": distinct_keys,
        "key_payload_conflicts": sum(1 for b in bodies.values() if len(b) > 1),
        "duplicates_without_same_key": sum(1 for k in keys_of.values() if len(k) > 1),
        "duplicates_same_key_per_1000": round(1000 * (total - distinct_keys) / max(1, total), 1),
        "deliveries_failed": int(failed or 0),
        # Counted apart: faults such as a broker pause may rightly raise platform incidents.
        "platform_incident_deliveries": sum(1 for d in deliveries if d.incident),
    }


# -- secrets -----------------------------------------------------------------------------


def check_secrets(paths: Iterable[Path], secrets: Iterable[str]) -> dict[str, Any]:
    found: list[str] = []
    wanted = [s for s in secrets if s]
    for path in paths:
        data = path.read_bytes()
        for secret in wanted:
            if secret.encode() in data:
                found.append(f"{path.name}: {secret[:6]}…")
    return {"secrets_in_logs": len(found), "secrets_found": found}


def today_in(tz: tzinfo, now: datetime | None = None) -> date:
    return (now or datetime.now(tz)).astimezone(tz).date()
