"""``KPI_KAFKA_*`` security settings (SASL and TLS) shared by every Kafka client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PROTOCOLS: tuple[Protocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to and encrypts its traffic with the brokers."""

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    # SecretStr keeps the password out of reprs, logs and tracebacks.
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


PLAINTEXT = KafkaSecurity()


class KafkaSecuritySettings(BaseSettings):
    """The security variables; ``Settings`` inherits them and the CLI reads them alone."""

    model_config = SettingsConfigDict(env_prefix="KPI_", extra="ignore", frozen=True)

    # Field order matters: each validator below sees only the fields declared before it.
    kafka_security_protocol: Protocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL for every Kafka client.",
    )
    kafka_sasl_mechanism: Mechanism = Field(
        default="SCRAM-SHA-512",
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* protocols only).",
    )
    kafka_sasl_username: str | None = Field(
        default=None, validate_default=True, description="SASL user (required with SASL_*)."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, validate_default=True, description="SASL password (never logged)."
    )
    kafka_ssl_cafile: str | None = Field(
        default=None,
        validate_default=True,
        description="PEM file of the CA that signed the brokers' certificates "
        "(default: the system's trusted CAs).",
    )
    kafka_ssl_certfile: str | None = Field(
        default=None, validate_default=True, description="Client certificate (PEM) for mTLS."
    )
    kafka_ssl_keyfile: str | None = Field(
        default=None, validate_default=True, description="Private key (PEM) of the certificate."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Verify the broker's certificate names the host dialled."
    )

    @field_validator("kafka_sasl_username")
    @classmethod
    def _username_with_sasl(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = value.strip() if value and value.strip() else None
        protocol = info.data.get("kafka_security_protocol", "PLAINTEXT")
        if value is None and str(protocol).startswith("SASL_"):
            raise ValueError(f"is required when KPI_KAFKA_SECURITY_PROTOCOL is {protocol}")
        return value

    @field_validator("kafka_sasl_password")
    @classmethod
    def _password_with_sasl(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        value = value if value is not None and value.get_secret_value() else None
        protocol = info.data.get("kafka_security_protocol", "PLAINTEXT")
        if value is None and str(protocol).startswith("SASL_"):
            raise ValueError(f"is required when KPI_KAFKA_SECURITY_PROTOCOL is {protocol}")
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not Path(value).is_file():
            raise ValueError(f"'{value}' is not a readable file")
        return value

    @field_validator("kafka_ssl_keyfile")
    @classmethod
    def _key_with_cert(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (value is None) != (info.data.get("kafka_ssl_certfile") is None):
            raise ValueError("KPI_KAFKA_SSL_CERTFILE and KPI_KAFKA_SSL_KEYFILE go together")
        return value

    @property
    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_check_hostname=self.kafka_ssl_check_hostname,
        )
