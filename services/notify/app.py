"""FastAPI application of the notify service: wires the routers and the lifespan-owned service."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify.api import alerts, channels, deliveries, silences, stream
from services.notify.handlers.transitions import Clock
from services.notify.service import NotifyService
from shared.runtime import Runtime, create_app
from shared.settings import Settings

SERVICE = "notify"


def build_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    service = NotifyService(clock)

    async def on_start(runtime: Runtime) -> None:
        await service.start(runtime)

    app = create_app(
        SERVICE,
        settings=settings,
        routers=[channels.router, stream.router, alerts.router, deliveries.router, silences.router],
        on_start=on_start,
        title="KPI notify service",
        description="Below-the-line alerts to supervisors.",
    )
    app.state.notify = service
    return app
