"""FastAPI application of the ingest service: routes plus lifespan-owned resources."""

from __future__ import annotations

from fastapi import FastAPI

from shared.runtime import Runtime, create_app
from shared.settings import Settings

SERVICE = "ingest"


async def on_start(runtime: Runtime) -> None:
    """Create this service's clients and background tasks (kept in the runtime)."""


def build_app(settings: Settings | None = None) -> FastAPI:
    return create_app(
        SERVICE,
        settings=settings,
        on_start=on_start,
        title="KPI ingest service",
        description=(
            "Validated intake of helpdesk and CRM events (HTTP and Kafka) "
            "with a dead-letter topic."
        ),
    )
