"""The dashboard's same-origin proxy to notify's alert API: an allow-list, SSE relayed as is."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from services.scoring.api.deps import Reader
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

# (method, notify path below /v1/) the dashboard may call through the proxy; nothing else.
_PROXY_ALLOWED: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GET", re.compile(r"alerts")),
    ("GET", re.compile(r"alerts/stream")),
    ("POST", re.compile(r"alerts/[A-Za-z0-9_.:-]{1,128}/ack")),
    ("GET", re.compile(r"silences")),
    ("POST", re.compile(r"silences")),
    ("DELETE", re.compile(r"silences/[A-Za-z0-9_.:-]{1,128}")),
    ("GET", re.compile(r"deliveries")),
    ("GET", re.compile(r"deliveries/[0-9]{1,19}")),
    ("POST", re.compile(r"deliveries/[0-9]{1,19}/resend")),
)
_FORWARD_QUERY = frozenset(
    {"state", "status", "team", "specialist", "kpi", "limit", "active", "cursor"}
)
_REQUEST_TIMEOUT = httpx.Timeout(5.0, read=10.0)
_STREAM_TIMEOUT = httpx.Timeout(5.0, read=None)


def _client(request: Request) -> httpx.AsyncClient:
    """One pooled client per process, created on first use and closed with the runtime."""
    client: httpx.AsyncClient | None = getattr(request.app.state, "notify_client", None)
    if client is None:
        runtime: Runtime = request.app.state.runtime
        client = httpx.AsyncClient(
            base_url=runtime.settings.notify_base_url + "/v1/",
            timeout=_REQUEST_TIMEOUT,
        )
        request.app.state.notify_client = client
        runtime.stoppers.append(client.aclose)
    return client


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"alerts unavailable: {reason}", "unavailable": "notify"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _forward(request: Request, path: str) -> Response:
    client = _client(request)
    headers = {"authorization": request.headers.get("authorization", "")}
    params = {k: v for k, v in request.query_params.items() if k in _FORWARD_QUERY}
    body = await request.body()
    if body:
        headers["content-type"] = "application/json"
    stream = path == "alerts/stream"
    timeout = _REQUEST_TIMEOUT
    if stream:
        # The resume point of a reconnecting dashboard: notify replays what it missed.
        last_id = request.headers.get("last-event-id")
        if last_id is not None:
            headers["last-event-id"] = last_id
        # Quiet periods are normal on a stream (notify sends a keep-alive every 15 s).
        timeout = _STREAM_TIMEOUT
    try:
        upstream = await client.send(
            client.build_request(
                request.method, path, params=params, content=body, headers=headers,
                timeout=timeout,
            ),
            stream=stream,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        logger.warning("notify proxy %s %s: %s", request.method, path, type(exc).__name__)
        return _unavailable(f"notify service unreachable ({type(exc).__name__})")
    if upstream.status_code >= 500:
        await upstream.aclose()
        return _unavailable(f"notify answered {upstream.status_code}")
    if not stream:
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )
    if upstream.status_code != 200:
        await upstream.aread()
        await upstream.aclose()
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            # notify went away mid-stream: end the stream, the browser reconnects by itself.
            return
        finally:
            await upstream.aclose()

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def notify_proxy_router() -> APIRouter:
    router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])

    async def notify_proxy(path: str, request: Request) -> Response:
        method = request.method
        if not any(m == method and rx.fullmatch(path) for m, rx in _PROXY_ALLOWED):
            return JSONResponse(
                {"detail": f"{method} {path} is not available through the dashboard"}, 404
            )
        return await _forward(request, path)

    summary = (
        "The dashboard's calls to notify (alerts, ack, silences, SSE, failed deliveries and "
        "resend), same origin"
    )

    @router.get("/notify/{path:path}", summary=summary)
    async def notify_get(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    @router.post("/notify/{path:path}", summary=summary)
    async def notify_post(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    @router.delete("/notify/{path:path}", summary=summary)
    async def notify_delete(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    return router
