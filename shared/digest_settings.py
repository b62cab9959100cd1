"""Settings of team digests (``KPI_DIGEST_*``): which periods get one, and when it goes out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.durations import parse_duration


class DigestSettings(BaseSettings):
    """The ``KPI_DIGEST_*`` variables; ``Settings`` inherits them (docs/configuration.md).

    Scoring builds and records the digests (services.scoring.digests), notify relays them.
    """

    model_config = SettingsConfigDict(env_prefix="KPI_", extra="ignore", frozen=True)

    digest_schedule: Literal["weekly", "monthly", "off"] = Field(
        default="weekly",
        description="A digest per team of each finished ISO week (weekly), calendar month "
        "(monthly), or none (off).",
    )
    digest_weekday: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field(default="monday", description="Weekly digests go out on this local weekday.")
    digest_hour: int = Field(
        default=8, ge=0, le=23, description="Local hour (KPI_TIMEZONE) digests go out at."
    )
    digest_scan_seconds: Annotated[float, BeforeValidator(parse_duration)] = Field(
        default=300.0, ge=1, le=86400, description="Period of scoring's digest scan."
    )

    @field_validator("digest_schedule", "digest_weekday", mode="before")
    @classmethod
    def _lower_word(cls, value: Any) -> Any:
        # Names are matched case-insensitively: "Monday" and " WEEKLY " are meant as written.
        return value.strip().lower() if isinstance(value, str) else value
