"""Prometheus metrics shared by the services and the /metrics endpoint."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "kpi_http_requests_total", "HTTP requests served", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "kpi_http_request_seconds",
    "HTTP request latency",
    ["service", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
READY = Gauge(
    "kpi_ready",
    "1 when the dependency answered the last readiness check",
    ["service", "dependency"],
)
ASSIGNED_PARTITIONS = Gauge(
    "kpi_consumer_assigned_partitions",
    "Partitions this process's consumer holds (0 = standby member or rebalancing)",
    ["service"],
)
CONSUMER_BATCHES = Counter(
    "kpi_consumer_batches_total", "Batches processed by a consumer loop", ["service", "outcome"]
)


def render() -> tuple[bytes, str]:
    """Exposition text of the default registry and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


CONSUMER_LAG = Gauge(
    "kpi_consumer_lag",
    "Records in this process's assigned partitions not applied yet (broker high-water marks)",
    ["service"],
)
CONSUMER_OLDEST_UNAPPLIED = Gauge(
    "kpi_consumer_oldest_unapplied_seconds",
    "Age of the oldest record this consumer has not applied yet (0 when caught up)",
    ["service"],
)
CONSUMER_STALLED = Gauge(
    "kpi_consumer_stalled",
    "1 while the consumer has lag and has applied nothing for KPI_STALL_SECONDS",
    ["service"],
)
LOG_RESETS = Counter(
    "kpi_consumer_log_resets_total",
    "Partitions whose broker log no longer matched the consumer's position (re-read from "
    "the log start)",
    ["service", "topic"],
)
POISON_RECORDS = Counter(
    "kpi_consumer_poison_total",
    "Records dead-lettered because processing them failed deterministically",
    ["service", "topic"],
)
STREAMS_OPEN = Gauge(
    "kpi_streams_open",
    "Alert streams (SSE) this process holds open (notify: subscribers; scoring: proxied)",
    ["service"],
)
STREAMS_REFUSED = Counter(
    "kpi_streams_refused_total",
    "Alert streams refused at a limit (per_token: 429; capacity: 503)",
    ["service", "reason"],
)
STREAMS_ENDED = Counter(
    "kpi_streams_ended_total",
    "Alert streams the server ended because a re-check found the token no longer valid",
    ["service", "reason"],
)

WEBHOOK_REQUESTS = Counter(
    "kpi_webhook_requests_total",
    "Native helpdesk webhook requests (POST /v1/webhooks/{vendor}) by vendor and outcome "
    "(accepted, ignored, rejected, not_understood, unauthorized, unavailable)",
    ["vendor", "outcome"],
)
WEBHOOK_IGNORED = Counter(
    "kpi_webhook_ignored_total",
    "Native helpdesk changes acknowledged without a KPI event, by vendor and reason",
    ["vendor", "reason"],
)
