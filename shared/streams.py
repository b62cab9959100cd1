"""Bounded long-lived HTTP streams (SSE): per-token and total slots, refusals, leased responses."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Final, Literal

import anyio
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shared import metrics
from shared.auth import hash_token
from shared.http_problems import problem_response

# A refused client waits this long before trying again (EventSource's own retry is 3 s).
RETRY_AFTER_SECONDS: Final = 5
SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

RefusalReason = Literal["per_token", "capacity"]
Release = Callable[[], None]


class StreamRefused(Exception):
    """A stream not opened: the token holds its maximum (429) or the server does (503)."""

    def __init__(self, reason: RefusalReason, detail: str, limit: int) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.limit = limit

    @property
    def status_code(self) -> int:
        return 429 if self.reason == "per_token" else 503

    @property
    def code(self) -> str:
        """The problem's code (docs/errors.md)."""
        return "too_many_streams" if self.reason == "per_token" else "stream_capacity"

    def response(self, request: Request) -> Response:
        """The problem answer, with Retry-After and the ``limit`` that was reached."""
        return problem_response(
            request,
            self.status_code,
            self.detail,
            code=self.code,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            limit=self.limit,
        )


class StreamSlots:
    """Open streams counted per token and in total; `acquire` refuses beyond either limit.

    Tokens are kept only as their hashes. One event loop owns an instance (no locking).
    """

    def __init__(self, service: str, per_token: int, total: int, what: str) -> None:
        self._service = service
        self.per_token = per_token
        self.total = total
        self._what = what
        self._held: dict[str, int] = {}
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def acquire(self, token: str) -> Release:
        """Take a slot for `token`; the returned callable gives it back (idempotent)."""
        key = hash_token(token)
        held = self._held.get(key, 0)
        if held >= self.per_token:
            self._refused("per_token")
            raise StreamRefused(
                "per_token",
                f"this token already has {held} open {self._what} (at most {self.per_token} "
                "per token); close one or retry later",
                self.per_token,
            )
        if self._open >= self.total:
            self._refused("capacity")
            raise StreamRefused(
                "capacity",
                f"all {self.total} {self._what} this server holds are in use; retry later",
                self.total,
            )
        self._held[key] = held + 1
        self._open += 1
        metrics.STREAMS_OPEN.labels(self._service).set(self._open)
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
            self._open -= 1
            metrics.STREAMS_OPEN.labels(self._service).set(self._open)

        return release

    def _refused(self, reason: RefusalReason) -> None:
        metrics.STREAMS_REFUSED.labels(self._service, reason).inc()


class EventStreamResponse(StreamingResponse):
    """An SSE response that gives its slot back when it ends, even if its body never started
    (a client gone before the first byte: the generator's own `finally` would never run)."""

    # Declared on the class too, so a route naming it as response_class documents the type.
    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterable[bytes], release: Release) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Close the body now, not when the garbage collector gets to it: its `finally`
            # gives back what it holds (a subscription, an upstream connection). Shielded,
            # since a client that went away cancels this task and the clean-up with it.
            aclose: Callable[[], Awaitable[None]] | None = getattr(
                self.body_iterator, "aclose", None
            )
            try:
                if aclose is not None:
                    with anyio.move_on_after(10, shield=True):
                        await aclose()
            finally:
                self._release()
