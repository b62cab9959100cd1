"""Wiring of the scoring service: configuration, read pool and engine in the lifespan, routers."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

from services.scoring.api.auth_routes import auth_router
from services.scoring.api.breakdown import breakdown_router
from services.scoring.api.dashboard import DASHBOARD_PATHS, DASHBOARD_PREFIXES
from services.scoring.api.dashboard import install as install_dashboard
from services.scoring.api.directory import directory_router
from services.scoring.api.kpis import kpi_router
from services.scoring.api.platform import platform_router
from services.scoring.api.sso import sso_router
from services.scoring.api.tickets import ticket_router
from services.scoring.api.users import bootstrap_admin, users_router
from services.scoring.appraisal.reminder_scan import start_reminders
from services.scoring.appraisal.routes import appraisal_router
from services.scoring.config import ScoringConfig
from services.scoring.db import ReadDb
from services.scoring.digests.periods import DigestSchedule
from services.scoring.digests.routes import digest_router
from services.scoring.digests.scan import start_digests
from services.scoring.engine.wiring import start_engine
from services.scoring.sso.domain import CALLBACK_PATH, LOGIN_PATH, OidcConfig
from services.scoring.sso.provider import OidcProvider
from shared.db import utcnow
from shared.http_guard import GuardPolicy
from shared.runtime import Runtime, create_app
from shared.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

SERVICE = "scoring"
# Below about a kilobyte the gzip header and the CPU cost more than the bytes saved.
GZIP_MIN_BYTES = 1024
# zlib's default level: the ~0.8 MB dashboard overview compresses in ~9 ms of CPU to ~14 %,
# where Starlette's default level 9 takes ~40 ms for 8 % fewer bytes.
GZIP_LEVEL = 6


def build_app(settings: Settings | None = None) -> FastAPI:
    async def start(runtime: Runtime) -> None:
        try:
            config = ScoringConfig.from_settings(runtime.settings)
            oidc = OidcConfig.from_settings(runtime.settings, runtime.settings.public_url)
        except SettingsError as exc:
            logger.error("scoring: %s", exc)
            raise
        app.state.config = config
        if oidc is not None:
            provider = OidcProvider(oidc)
            runtime.stoppers.append(provider.aclose)
            app.state.oidc = provider
            logger.info("single sign-on by OpenID Connect: issuer %s", oidc.issuer)
        # The API's read pool lives as long as the runtime; closed after the engine stops.
        read_db = await ReadDb.create(runtime.settings.database_dsn)
        runtime.stoppers.append(read_db.close)
        app.state.read_db = read_db
        await bootstrap_admin(runtime)
        await start_engine(runtime, config)
        # Read through app.state so a clock a test injects reaches the scan too.
        app.state.reminders = start_reminders(runtime, config, lambda: app.state.clock())
        app.state.digest_schedule = DigestSchedule.from_settings(runtime.settings)
        app.state.digests = start_digests(runtime, config, lambda: app.state.clock())

    app = create_app(
        SERVICE,
        settings=settings,
        routers=[
            kpi_router(),
            breakdown_router(),
            directory_router(),
            appraisal_router(),
            ticket_router(),
            digest_router(),
            platform_router(),
            auth_router(),
            sso_router(),
            users_router(),
        ],
        on_start=start,
        title="KPI scoring service",
        description="Exactly-once KPI engine and KPI queries.",
        guard=GuardPolicy(
            dashboard_paths=DASHBOARD_PATHS,
            dashboard_prefixes=DASHBOARD_PREFIXES,
            # Signing in, and what the sign-in page offers, come before any credential; the
            # provider sends the browser back to the callback without one (docs/security.md).
            public_routes=[
                ("POST", "/v1/auth/login"),
                ("GET", "/v1/auth/methods"),
                ("GET", LOGIN_PATH),
                ("GET", CALLBACK_PATH),
            ],
        ),
    )
    # Injectable clock: "today" for as_of and history defaults; tests replace it.
    app.state.clock = utcnow
    # Only for clients that send Accept-Encoding: gzip. text/event-stream (the alert stream the
    # dashboard proxies from notify) is in GZipMiddleware's default exclusions, so each event
    # goes out unencoded as soon as it is relayed (tests/unit/test_scoring_gzip.py holds this).
    # Appended, i.e. innermost: outside the runtime's metrics middleware (BaseHTTPMiddleware)
    # it would see every body as a stream, gzip even tiny ones and drop Content-Length.
    app.user_middleware.append(
        Middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    )
    install_dashboard(app)
    return app
