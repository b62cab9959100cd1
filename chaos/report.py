"""Prints a chaos report and writes it as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def render(r: dict[str, Any]) -> str:
    a = r.get("alerts", {})
    lines = [
        f"chaos campaign ({r.get('mode')}, seed {r.get('seed')}): "
        f"{'PASSED' if r.get('passed') else 'FAILED'}",
        f"  events generated {r.get('events_generated')}, "
        f"deliveries {r.get('deliveries_generated')}"
        f" (Kafka acked {r.get('kafka_messages_acked')}, resent {r.get('kafka_resends')}; "
        f"HTTP items {r.get('http_items_sent')}, retried requests {r.get('http_retries')})",
        f"  unique valid events {r.get('unique_valid_events')}, with effect "
        f"{r.get('events_with_effect')}",
        f"  lost {r.get('lost')}   duplicate effects {r.get('duplicate_effects')}   "
        f"unexpected {r.get('unexpected_events')}",
        f"  KPI mismatches {r.get('mismatches')} (day cells {r.get('day_cells')}, window cells "
        f"{r.get('window_cells')}, REST cells {r.get('rest_cells')}, facts vs daily "
        f"{r.get('facts_vs_daily_mismatches')})",
        f"  same-id conflicts generated {r.get('conflicting_ids_generated')}, recorded "
        f"{r.get('conflicting_ids_recorded')}",
        f"  dead-lettered {r.get('deadlettered_distinct')} of {r.get('malformed_sent')} malformed"
        f" (missing {r.get('deadletter_missing')}, unexpected {r.get('deadletter_unexpected')}, "
        f"redelivered copies {r.get('deadletter_redelivered')})",
        f"  poison records straight to kpi.events {r.get('poison_sent')} "
        f"({len(r.get('poison_kinds') or [])} kinds): dead-lettered {r.get('poison_deadlettered')}"
        f" (missing {r.get('poison_missing')}, more than once {r.get('poison_duplicates')}, "
        f"wrong bytes/place/reason {r.get('poison_bad_records')})",
        f"  alerts: expected transitions {a.get('expected_transitions')}, delivered "
        f"{a.get('delivered_transitions')}, missed {a.get('missed')}; open at end "
        f"{a.get('expected_open_alerts')}; deliveries {a.get('deliveries_received')} with "
        f"{a.get('delivery_keys')} keys (same-key duplicates "
        f"{a.get('duplicates_same_key_per_1000')}/1000, without same key "
        f"{a.get('duplicates_without_same_key')}, key/payload conflicts "
        f"{a.get('key_payload_conflicts')}, failed {a.get('deliveries_failed')}); "
        f"platform-health notices {a.get('platform_incident_deliveries')}",
        f"  faults injected {len(r.get('faults', []))}: "
        + ", ".join(f"{k}" for k in r.get("faults_by_kind", {})),
        f"  faults the platform did not show (log reset without incident, statement timeout "
        f"that never bit) {r.get('faults_unnoticed')}",
        f"  recovery to zero lag p50 {r.get('recovery_p50_s')} s, max {r.get('recovery_max_s')} s"
        f" (not recovered {r.get('faults_not_recovered')}, failed {r.get('faults_failed')})",
        f"  secrets in logs {r.get('secrets_in_logs')}; drained {r.get('drained')}, settled "
        f"{r.get('settled')}; stream {r.get('stream_seconds')} s",
        f"  notify overrides {r.get('notify_overrides')} (else production defaults); a delivery "
        f"may rightly stay owed up to {r.get('delivery_settle_s')} s",
    ]
    for f in r.get("faults", []):
        rec = "—" if f["recovery_s"] is None else f"{f['recovery_s']:.1f}s"
        lines.append(
            f"    {f['kind']:<20} {f['target']:<10} at {f['started'] or 0:6.1f}s "
            f"hold {f['hold']:5.1f}s  recovery {rec}"
            + (f"  {f['detail']}" if f.get("detail") else "")
            + (f"  ERROR {f['error']}" if f["error"] else "")
        )
    samples = ("day_mismatch_sample", "window_mismatch_sample", "rest_mismatch_sample")
    for key in (*samples, "lost_sample"):
        if r.get(key):
            lines.append(f"  {key}: {r[key]}")
    if a.get("final_state_errors"):
        lines.append(f"  final alert state errors: {a['final_state_errors']}")
    if a.get("missed_transitions_sample"):
        lines.append(f"  missed transitions: {a['missed_transitions_sample']}")
    if r.get("poison_missing_kinds"):
        lines.append(f"  poison kinds not dead-lettered: {r['poison_missing_kinds']}")
    if r.get("poison_bad_sample"):
        lines.append(f"  poison dead letters wrong: {r['poison_bad_sample']}")
    if r.get("secrets_found"):
        lines.append(f"  secrets found: {r['secrets_found']}")
    if r.get("logs"):
        lines.append(f"  logs kept in {r['logs']}")
    return "\n".join(lines)


def write(r: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2, default=str) + "\n")
