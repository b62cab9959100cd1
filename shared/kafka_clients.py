"""The one place Kafka clients are built: every producer, consumer and admin gets the security."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context

from shared.kafka_settings import PLAINTEXT, KafkaSecurity


class KafkaSecurityError(ValueError):
    """The TLS files could not be loaded; the message names the variable and the reason."""


def security_options(security: KafkaSecurity | None) -> dict[str, Any]:
    """aiokafka keyword arguments for ``security`` (PLAINTEXT when None)."""
    security = security or PLAINTEXT
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_sasl:
        password = security.sasl_password.get_secret_value() if security.sasl_password else None
        options |= {
            "sasl_mechanism": security.sasl_mechanism,
            "sasl_plain_username": security.sasl_username,
            "sasl_plain_password": password,
        }
    if security.uses_ssl:
        options["ssl_context"] = ssl_context(security)
    return options


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """Verifying TLS context from the CA / client certificate files (system CAs by default)."""
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=security.ssl_cafile)
    except (ssl.SSLError, OSError) as exc:
        raise KafkaSecurityError(
            f"KPI_KAFKA_SSL_CAFILE: cannot load a CA from it ({exc})"
        ) from None
    if security.ssl_certfile:
        try:
            context.load_cert_chain(security.ssl_certfile, security.ssl_keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise KafkaSecurityError(
                "KPI_KAFKA_SSL_CERTFILE/KPI_KAFKA_SSL_KEYFILE: not a matching PEM certificate "
                f"and key ({exc})"
            ) from None
    context.check_hostname = security.ssl_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def create_producer(
    bootstrap: str, *, client_id: str, security: KafkaSecurity | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """Producer tuned for batching; acks=all, no idempotence (the embedded broker lacks it)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "request_timeout_ms": 15000,
        "retry_backoff_ms": 200,
        **security_options(security),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def create_consumer(
    bootstrap: str,
    *,
    group_id: str | None,
    client_id: str,
    topics_: Sequence[str] = (),
    security: KafkaSecurity | None = None,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """Consumer with manual commits: offsets only move after the batch's effects are durable.

    ``group_id`` None is a side reader: explicit assignment, nothing committed.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_uncommitted",
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 2000,
        "max_poll_interval_ms": 300000,
        **security_options(security),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics_, **options)


def create_admin(
    bootstrap: str, *, client_id: str, security: KafkaSecurity | None = None
) -> AIOKafkaAdminClient:
    """Admin client (topic creation, config lookups)."""
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id=client_id, **security_options(security)
    )


def create_client(
    bootstrap: str, *, client_id: str, security: KafkaSecurity | None = None
) -> AIOKafkaClient:
    """Bare metadata client (readiness pings)."""
    return AIOKafkaClient(
        bootstrap_servers=bootstrap, client_id=client_id, **security_options(security)
    )
