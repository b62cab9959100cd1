"""The dashboard's same-origin proxy to notify's alert API: an allow-list, SSE relayed as is."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.scoring.api.deps import Reader
from shared.accounts import CSRF_HEADER, SESSION_COOKIE
from shared.auth import Credential, credential_of
from shared.notify_api import (
    AlertList,
    AlertOut,
    ChannelOut,
    ChannelTestOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    SilenceList,
    SilenceOut,
)
from shared.runtime import Runtime
from shared.streams import EventStreamResponse, StreamRefused, StreamSlots

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
    # The admin screen of alert channels (notify answers 403 to anyone but an admin).
    ("GET", re.compile(r"channels")),
    ("POST", re.compile(r"channels")),
    ("GET", re.compile(r"channels/[A-Za-z0-9_.:-]{1,128}")),
    ("PUT", re.compile(r"channels/[A-Za-z0-9_.:-]{1,128}")),
    ("DELETE", re.compile(r"channels/[A-Za-z0-9_.:-]{1,128}")),
    ("POST", re.compile(r"channels/[A-Za-z0-9_.:-]{1,128}/test")),
)
_FORWARD_QUERY = frozenset(
    {"state", "status", "team", "specialist", "kpi", "limit", "active", "cursor"}
)
_REQUEST_TIMEOUT = httpx.Timeout(5.0, read=10.0)
# Quiet periods are normal on a stream (notify sends a keep-alive every 15 s). The stream pool
# is never waited on: a slot is taken before a connection is asked for (pool=1.0 is a guard).
_STREAM_TIMEOUT = httpx.Timeout(5.0, read=None, pool=1.0)
# Upstream headers a caller needs: a 429/503 from notify says when to come back.
_PASS_HEADERS = ("retry-after",)
# notify's bodies, relayed byte for byte: their models are defined once in shared.notify_api
# (notify's routes declare them as response models) and documented here path by path.
_RELAYED_GET: dict[str, Any] = {
    "model": AlertList
    | SilenceList
    | DeliveryPage
    | DeliveryDetail
    | list[ChannelOut]
    | ChannelOut,
    "description": "notify's answer as is (status, JSON body, Retry-After): `alerts` an "
    "AlertList, `silences` a SilenceList, `deliveries` a DeliveryPage, `deliveries/{id}` a "
    "DeliveryDetail, `channels` a list of ChannelOut, `channels/{id}` a ChannelOut; "
    "`alerts/stream` its server-sent events.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_RELAYED_POST: dict[str, Any] = {
    "model": AlertOut | DeliveryOut | ChannelTestOut,
    "description": "notify's answer as is: `alerts/{id}/ack` the AlertOut, "
    "`deliveries/{id}/resend` the DeliveryOut, `channels/{id}/test` the ChannelTestOut.",
}
_RELAYED_CREATED: dict[str, Any] = {
    "model": SilenceOut | ChannelOut,
    "description": "notify's answer as is: `silences` the SilenceOut, `channels` the "
    "ChannelOut it created.",
}
_RELAYED_PUT: dict[str, Any] = {
    "model": ChannelOut,
    "description": "notify's answer as is: `channels/{id}` the ChannelOut it updated.",
}


class _Upstream:
    """notify as the proxy reaches it: one pool for calls, a separate bounded one for streams.

    Every open stream holds a connection for as long as it is open; sharing one pool made the
    101st viewer's stream, and every ack or silence after it, wait for a free connection.
    """

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        base_url = settings.notify_base_url + "/v1/"
        self.calls = httpx.AsyncClient(base_url=base_url, timeout=_REQUEST_TIMEOUT)
        pool = settings.dashboard_stream_pool
        self.streams = httpx.AsyncClient(
            base_url=base_url,
            timeout=_STREAM_TIMEOUT,
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=min(pool, 20)),
        )
        self.slots = StreamSlots(
            "scoring", settings.stream_max_per_token, pool, "dashboard alert streams"
        )

    async def aclose(self) -> None:
        await self.calls.aclose()
        await self.streams.aclose()


def _upstream(request: Request) -> _Upstream:
    """Created on first use and closed with the runtime."""
    upstream: _Upstream | None = getattr(request.app.state, "notify_upstream", None)
    if upstream is None:
        runtime: Runtime = request.app.state.runtime
        upstream = _Upstream(runtime)
        request.app.state.notify_upstream = upstream
        runtime.stoppers.append(upstream.aclose)
    return upstream


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"alerts unavailable: {reason}", "unavailable": "notify"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _relayed(upstream: httpx.Response) -> Response:
    """notify's answer as it is: status, body, content type and the headers a client needs."""
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
        headers={h: upstream.headers[h] for h in _PASS_HEADERS if h in upstream.headers},
    )


async def _send(
    client: httpx.AsyncClient, request: Request, path: str, headers: dict[str, str], stream: bool
) -> httpx.Response | JSONResponse:
    params = {k: v for k, v in request.query_params.items() if k in _FORWARD_QUERY}
    body = await request.body()
    if body:
        headers["content-type"] = "application/json"
    try:
        upstream = await client.send(
            client.build_request(
                request.method, path, params=params, content=body, headers=headers
            ),
            stream=stream,
        )
    except httpx.HTTPError as exc:
        logger.warning("notify proxy %s %s: %s", request.method, path, type(exc).__name__)
        return _unavailable(f"notify service unreachable ({type(exc).__name__})")
    # A 503 with Retry-After is notify's deliberate "come back later" (its stream capacity):
    # relayed with its reason. Any other 5xx is notify failing.
    deliberate = upstream.status_code == 503 and "retry-after" in upstream.headers
    if upstream.status_code >= 500 and not deliberate:
        await upstream.aclose()
        return _unavailable(f"notify answered {upstream.status_code}")
    return upstream


def _credentials(request: Request) -> dict[str, str]:
    """What notify authenticates the caller by, as the caller sent it to scoring's guard: the
    bearer token, or the session cookie with its CSRF token (notify checks both alike)."""
    credential = credential_of(request.headers)
    if credential is None or credential.kind == "bearer":
        return {"authorization": request.headers.get("authorization", "")}
    headers = {"cookie": f"{SESSION_COOKIE}={credential.secret}"}
    csrf = request.headers.get(CSRF_HEADER)
    if csrf is not None:
        headers[CSRF_HEADER.lower()] = csrf
    return headers


async def _forward(request: Request, path: str) -> Response:
    client = _upstream(request).calls
    headers = _credentials(request)
    upstream = await _send(client, request, path, headers, stream=False)
    return upstream if isinstance(upstream, Response) else _relayed(upstream)


async def _forward_stream(request: Request) -> Response:
    upstreams = _upstream(request)
    try:
        credential = credential_of(request.headers) or Credential("bearer", "")
        release = upstreams.slots.acquire(credential.secret)
    except StreamRefused as refused:
        return refused.response()
    headers = _credentials(request)
    # The resume point of a reconnecting dashboard: notify replays what it missed.
    last_id = request.headers.get("last-event-id")
    if last_id is not None:
        headers["last-event-id"] = last_id
    try:
        upstream = await _send(upstreams.streams, request, "alerts/stream", headers, stream=True)
        if isinstance(upstream, Response):
            release()
            return upstream
        if upstream.status_code != 200:
            await upstream.aread()
            await upstream.aclose()
            release()
            return _relayed(upstream)
    except BaseException:
        release()
        raise

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            # notify went away mid-stream: end the stream, the browser reconnects by itself.
            return
        finally:
            # Shielded: the connection goes back to the stream pool even when the client's
            # disconnect cancelled this task.
            with anyio.move_on_after(5, shield=True):
                await upstream.aclose()

    return EventStreamResponse(relay(), release)


def notify_proxy_router() -> APIRouter:
    router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])

    async def notify_proxy(path: str, request: Request) -> Response:
        method = request.method
        if not any(m == method and rx.fullmatch(path) for m, rx in _PROXY_ALLOWED):
            return JSONResponse(
                {"detail": f"{method} {path} is not available through the dashboard"}, 404
            )
        if path == "alerts/stream":
            return await _forward_stream(request)
        return await _forward(request, path)

    summary = (
        "The dashboard's calls to notify (alerts, ack, silences, SSE, failed deliveries and "
        "resend, channels and their test), same origin"
    )

    @router.get("/notify/{path:path}", summary=summary, responses={200: _RELAYED_GET})
    async def notify_get(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    @router.post(
        "/notify/{path:path}",
        summary=summary,
        responses={200: _RELAYED_POST, 201: _RELAYED_CREATED},
    )
    async def notify_post(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    @router.put("/notify/{path:path}", summary=summary, responses={200: _RELAYED_PUT})
    async def notify_put(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    @router.delete(
        "/notify/{path:path}",
        summary=summary,
        status_code=204,
        responses={204: {"description": "notify's answer as is (no body)."}},
    )
    async def notify_delete(path: str, request: Request, principal: Reader) -> Response:
        return await notify_proxy(path, request)

    return router
