"""HTTP guard of every service: auth and body limits before the body is read, security headers.

One ASGI middleware for the three apps (installed by ``shared.runtime.create_app``):

- Every path except the public ones (health, metrics, API docs, the dashboard's static UI,
  signing in) needs a valid bearer token or dashboard session, checked from the headers alone
  before anything reads the body (401, or 503 with Retry-After when the store cannot be
  asked); a session's unsafe method also needs its CSRF token (403). The principal is left
  in the request's state, where ``shared.auth.require`` takes it: one lookup per request.
- A declared ``Content-Length`` above the route's limit is answered 413 without reading a
  byte; a streamed (chunked) body is counted as it arrives and answered 413 as soon as it
  crosses the limit, so at most the limit is ever buffered.
- Every response carries a Content-Security-Policy (the dashboard's allows no inline script
  or style), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and
  ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import path_ids
from shared.auth import PRINCIPAL_STATE_KEY, AuthError, authenticate
from shared.settings import Settings

# Always public: liveness/readiness probes, Prometheus, the OpenAPI document and its viewers.
PUBLIC_PATHS: Final = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
_DOCS_PATHS: Final = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

# JSON answers are never meant to be rendered, framed or to load anything.
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The dashboard: its own scripts, styles and API only; no inline script, handler or style.
DASHBOARD_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages load their viewer from jsDelivr and start it inline.
DOCS_CSP: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
BODY_TOO_LARGE = "body_too_large"


@dataclass(frozen=True)
class BodyLimit:
    """A route's own body limit: the variable that sets it and how to read it."""

    env: str
    of: Callable[[Settings], int]


DEFAULT_LIMIT: Final = BodyLimit("KPI_HTTP_MAX_BODY_BYTES", lambda s: s.http_max_body_bytes)


class BodyTooLarge(HTTPException):
    """Raised into whoever reads a body past its limit; answered 413 naming the limit."""

    def __init__(self, limit: int, env: str) -> None:
        self.limit = limit
        self.env = env
        super().__init__(413, f"request body is larger than {limit} bytes ({env})")


def too_large_body(limit: int, env: str) -> dict[str, Any]:
    return {
        "detail": f"request body is larger than {limit} bytes ({env}); "
        "split it into smaller requests",
        "code": BODY_TOO_LARGE,
        "limit_bytes": limit,
    }


async def body_too_large_handler(request: Request, exc: Exception) -> JSONResponse:
    """The app's answer when a route was reading the body that crossed the limit."""
    assert isinstance(exc, BodyTooLarge)
    return JSONResponse(too_large_body(exc.limit, exc.env), status_code=413)


@dataclass(frozen=True)
class GuardPolicy:
    """What differs per service: the dashboard's paths (exact, and prefixes covering
    everything below them) and routes with their own body limit."""

    dashboard_paths: Sequence[str] = ()
    dashboard_prefixes: Sequence[str] = ()
    body_limits: Mapping[str, BodyLimit] = field(default_factory=dict)
    # Prefixes of POST routes ``<prefix><one segment>`` that authenticate the request
    # themselves from its body (a helpdesk's signed webhook): no bearer token is asked for
    # here; the body limit applies. Other methods below them need a token as usual.
    self_authenticated: Sequence[str] = ()
    # (method, path) of routes anyone may call (signing in).
    public_routes: Sequence[tuple[str, str]] = ()

    def is_dashboard(self, path: str) -> bool:
        if path in self.dashboard_paths:
            return True
        if any(seg in (".", "..") for seg in path.split("/")):
            return False  # never let a dot segment borrow the dashboard's public prefix
        return any(path.startswith(p) for p in self.dashboard_prefixes)

    def is_public(self, path: str, method: str = "GET") -> bool:
        return (
            path in PUBLIC_PATHS
            or (method, path) in self.public_routes
            or (method == "POST" and self._self_authenticated(path))
            or self.is_dashboard(path)
        )

    def _self_authenticated(self, path: str) -> bool:
        for prefix in self.self_authenticated:
            rest = path.removeprefix(prefix)
            if rest != path and rest not in ("", ".", "..") and "/" not in rest:
                return True
        return False

    def csp(self, path: str) -> bytes:
        if path in _DOCS_PATHS:
            return DOCS_CSP.encode()
        return (DASHBOARD_CSP if self.is_dashboard(path) else API_CSP).encode()

    def body_limit(self, path: str) -> BodyLimit:
        return self.body_limits.get(path, DEFAULT_LIMIT)


async def _answer(
    send: Send, status: int, body: dict[str, Any], headers: Mapping[str, str] = {}
) -> None:
    payload = orjson.dumps(body)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    # The server has already refused a malformed Content-Length; this is only for typing.
    return int(value) if value is not None and value.isdigit() else None


class HttpGuard:
    """The ASGI middleware itself; see the module docstring."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path_ids.keep_encoded_slashes(scope)
        path: str = scope["path"]
        started = False
        csp = self.policy.csp(path)

        async def send_secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in (*SECURITY_HEADERS, (b"content-security-policy", csp)):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        runtime = getattr(scope["app"].state, "runtime", None)
        if runtime is None:  # only before the lifespan has started
            starting = {"detail": "service is starting"}
            await _answer(send_secured, 503, starting, {"Retry-After": "1"})
            return
        headers = Headers(scope=scope)
        if not self.policy.is_public(path, scope["method"]):
            try:
                principal = await authenticate(runtime.authenticator, headers, scope["method"])
            except AuthError as exc:
                await _answer(send_secured, exc.status_code, {"detail": exc.detail}, exc.headers)
                return
            scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
        rule = self.policy.body_limit(path)
        limit = rule.of(runtime.settings)
        declared = _declared_length(headers)
        if declared is not None and declared > limit:
            await _answer(send_secured, 413, too_large_body(limit, rule.env))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, rule.env)
            return message

        try:
            await self.app(scope, limited_receive, send_secured)
        except BodyTooLarge as exc:
            # Normally answered inside the app (body_too_large_handler); this is the fallback
            # for a reader outside it.
            if started:
                raise
            await _answer(send_secured, 413, too_large_body(exc.limit, exc.env))
