"""FastAPI application of the notify service: routes plus lifespan-owned resources."""

from __future__ import annotations

from fastapi import FastAPI

from shared.runtime import Runtime, create_app
from shared.settings import Settings

SERVICE = "notify"


async def on_start(runtime: Runtime) -> None:
    """Create this service's clients and background tasks (kept in the runtime)."""


def build_app(settings: Settings | None = None) -> FastAPI:
    return create_app(
        SERVICE,
        settings=settings,
        on_start=on_start,
        title="KPI notify service",
        description="Below-the-line alerts to supervisors.",
    )
