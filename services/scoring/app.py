"""FastAPI application of the scoring service: routes plus lifespan-owned resources."""

from __future__ import annotations

from fastapi import FastAPI

from shared.runtime import Runtime, create_app
from shared.settings import Settings

SERVICE = "scoring"


async def on_start(runtime: Runtime) -> None:
    """Create this service's clients and background tasks (kept in the runtime)."""


def build_app(settings: Settings | None = None) -> FastAPI:
    return create_app(
        SERVICE,
        settings=settings,
        on_start=on_start,
        title="KPI scoring service",
        description="Exactly-once KPI engine and KPI queries.",
    )
