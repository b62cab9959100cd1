"""Service runtime: lifespan-owned resources, background tasks, health routes, server entry."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import asyncpg
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import metrics, openapi, path_ids
from shared.auth import AUTH_RETRY_AFTER, Authenticator, Principal, Role, require
from shared.db import create_engine, create_sessionmaker, ping
from shared.http_guard import BodyTooLarge, GuardPolicy, HttpGuard, body_too_large_handler
from shared.kafka import broker_ping
from shared.logging import configure_logging, redact
from shared.poison import is_transient
from shared.sessions import session_lookup
from shared.settings import Settings, SettingsError, load_settings
from shared.text import INVALID_TEXT, PYDANTIC_UNICODE_ERROR, scrub, unicode_error_reason

logger = logging.getLogger(__name__)

Hook = Callable[["Runtime"], Awaitable[None]]


# Net container allocations between young collections. Python's default (700) runs a
# collection every few dozen events of a batch and promotes the batch's objects into older
# generations that are then rescanned: ~16 % of the scoring consumer's CPU. Nearly all of
# it is freed by reference counting when the batch ends; cycle garbage (exceptions, asyncio
# internals) is still collected, just after 50,000 net allocations instead of 700.
GC_YOUNG_THRESHOLD = 50_000
_gc_tuned = False


def tune_gc_for_batches() -> None:
    """Once per process: freeze the start-up heap and space out collections for batch work.

    Freezing moves the long-lived start-up objects (modules, schemas, settings) out of the
    collector's reach, so the rare full collection no longer rescans them.
    """
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class Runtime:
    """Everything a service process owns; created in lifespan, closed on shutdown."""

    def __init__(self, service: str, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings.database_dsn, application_name=service)
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        token = settings.bootstrap_admin_token
        self.authenticator = Authenticator(
            self.sessionmaker,
            token.get_secret_value() if token else None,
            cache_seconds=settings.auth_cache_seconds,
            stale_seconds=settings.auth_stale_seconds,
            session_lookup=session_lookup(self.sessionmaker, settings.session_policy),
        )
        self.tasks: list[asyncio.Task[Any]] = []
        self.stoppers: list[Callable[[], Awaitable[None] | None]] = []
        self.extra_checks: dict[str, Callable[[], str | None]] = {}
        self._ready_cache: tuple[float, dict[str, str]] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a background task that is kept and awaited on shutdown."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self.tasks.append(task)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s died", task.get_name(), exc_info=task.exception())

    async def close(self, grace: float = 5.0) -> None:
        for stop in reversed(self.stoppers):
            result = stop()
            if result is not None:
                with contextlib.suppress(Exception):
                    await result
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.engine.dispose()

    async def readiness(self) -> dict[str, str]:
        """'ok' or the reason per dependency; cached for a second to absorb probe storms."""
        now = time.monotonic()
        if self._ready_cache and self._ready_cache[0] > now:
            return self._ready_cache[1]

        async def check(name: str, probe: Awaitable[None]) -> tuple[str, str]:
            try:
                await asyncio.wait_for(probe, 3.0)
                return name, "ok"
            except TimeoutError:
                return name, "timed out after 3s"
            except Exception as exc:
                return name, redact(f"{type(exc).__name__}: {exc}")[:300] or type(exc).__name__

        results = dict(
            await asyncio.gather(
                check("database", ping(self.engine)),
                check(
                    "broker",
                    broker_ping(
                        self.settings.bootstrap_servers, security=self.settings.kafka_security
                    ),
                ),
            )
        )
        for name, probe_fn in self.extra_checks.items():
            problem = probe_fn()
            results[name] = "ok" if problem is None else problem
        for dep, state in results.items():
            metrics.READY.labels(self.service, dep).set(1 if state == "ok" else 0)
        self._ready_cache = (now + 1.0, results)
        return results


class Liveness(BaseModel):
    """Body of GET /healthz."""

    status: str
    service: str


class Readiness(BaseModel):
    """Body of GET /readyz: 'ready' (200) or 'unavailable' (503), and each dependency's state."""

    status: str
    service: str
    checks: dict[str, str]


class WhoAmI(BaseModel):
    """Body of GET /v1/whoami."""

    role: str
    subject: str
    team_ids: list[str]
    specialist_id: str | None = None


def health_router(service: str) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness", response_model=Liveness)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get(
        "/readyz",
        summary="Readiness: database and broker reachable",
        responses={200: {"model": Readiness}, 503: {"model": Readiness}},
    )
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ok else "unavailable", "service": service, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/v1/whoami", summary="The caller's role, subject and teams", response_model=WhoAmI)
    # Any valid token may ask who it is; require() alone would admit admins only.
    async def whoami(principal: Principal = Depends(require(*Role))) -> dict[str, object]:
        return {
            "role": principal.role.value,
            "subject": principal.subject,
            "team_ids": sorted(principal.team_ids),
            "specialist_id": principal.specialist_id,
        }

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    return router


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {scrub(str(k)): _scrubbed(v) for k, v in value.items()}
    return value


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 answer, for any input: request bodies are parsed by the standard library,
    whose strings can hold unpaired surrogates that the default answer echoes and cannot
    encode (a 500 instead of a 422); those are reported as INVALID_TEXT and scrubbed."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        if err.get("type") == PYDANTIC_UNICODE_ERROR:
            err = {**err, "type": INVALID_TEXT, "msg": unicode_error_reason(err.get("input"))}
        errors.append(err)
    return JSONResponse({"detail": _scrubbed(jsonable_encoder(errors))}, status_code=422)


# Failures of what a route stands on rather than of the request: answered 503 when transient.
_INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


async def _infrastructure_down(request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL (or another dependency) unreachable mid-request: 503 with Retry-After, not
    500; anything that is not an outage stays a server error."""
    if not is_transient(exc):
        raise exc
    logger.warning(
        "%s %s: dependency unavailable: %s", request.method, request.url.path, type(exc).__name__
    )
    return JSONResponse(
        {"detail": "temporarily unavailable: a dependency (database) cannot be reached; "
         "retry later", "code": "unavailable"},
        status_code=503,
        headers={"Retry-After": AUTH_RETRY_AFTER},
    )  # fmt: skip


def create_app(
    service: str,
    *,
    settings: Settings | None = None,
    routers: Sequence[APIRouter] = (),
    on_start: Hook | None = None,
    title: str,
    description: str = "",
    guard: GuardPolicy | None = None,
    openapi_schemas: Mapping[str, object] = {},
) -> FastAPI:
    """FastAPI app whose lifespan owns the runtime and its background tasks.

    Every request passes the HTTP guard (auth and body limit before the body is read,
    security headers); ``guard`` names the service's dashboard paths and own body limits.
    ``openapi_schemas`` are extra component schemas (bodies a route reads itself).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(service, settings or load_settings())
        app.state.runtime = runtime
        app.state.authenticator = runtime.authenticator
        app.state.settings = runtime.settings
        try:
            if on_start is not None:
                await on_start(runtime)
            logger.info("%s started", service)
            yield
        finally:
            logger.info("%s stopping", service)
            await runtime.close()
            logger.info("%s stopped", service)

    policy = guard or GuardPolicy()
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
    )
    openapi.install(app, policy, openapi_schemas)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(BodyTooLarge, body_too_large_handler)
    for error in _INFRASTRUCTURE_ERRORS:
        app.add_exception_handler(error, _infrastructure_down)
    path_ids.install()  # before the routes are created: they capture the convertor
    app.include_router(health_router(service))
    for router in routers:
        app.include_router(router)
    # Added before the metrics middleware below, so it runs inside it: its answers are counted.
    app.add_middleware(HttpGuard, policy=policy)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.HTTP_REQUESTS.labels(service, path, request.method, str(response.status_code)).inc()
        metrics.HTTP_LATENCY.labels(service, path).observe(time.perf_counter() - started)
        return response

    return app


def serve(
    service: str, app_factory: Callable[[Settings], FastAPI], port_of: Callable[[Settings], int]
) -> None:
    """Process entry point: validated settings, JSON logs, uvicorn with graceful SIGTERM."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service, settings.log_level, settings.log_format)
    app = app_factory(settings)
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=port_of(settings),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal after a graceful shutdown, which would turn a clean
    # SIGTERM exit into status -15; a no-op handler underneath makes the exit status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
    if not server.started:
        raise SystemExit(1)
