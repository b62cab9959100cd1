"""The scoring app's gzip layer never encodes (and so never holds back) an SSE stream."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from starlette.types import Message

from services.scoring.app import GZIP_MIN_BYTES, build_app
from shared.runtime import Runtime
from shared.settings import load_settings

TOKEN = "kpi_gzip_test_admin_token"


async def _call(path: str, accept: bytes, gate: asyncio.Event) -> list[Message]:
    """Drive the app's full middleware stack directly, recording what it sends."""
    settings = load_settings(bootstrap_admin_token=TOKEN)
    app = build_app(settings)
    # No lifespan (it would start the engine): the runtime the HTTP guard authenticates with
    # is created by hand; it opens no connection for the bootstrap token.
    app.state.runtime = Runtime("scoring", settings)
    event = b"data: " + b"x" * (2 * GZIP_MIN_BYTES) + b"\n\n"

    async def stream() -> AsyncIterator[bytes]:
        yield event
        await gate.wait()  # the second event only once the first reached the client
        yield event

    async def sse() -> StreamingResponse:
        return StreamingResponse(stream(), media_type="text/event-stream")

    async def big() -> StreamingResponse:
        return StreamingResponse(stream(), media_type="application/json")

    app.add_api_route("/test/sse", sse)
    app.add_api_route("/test/big", big)
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            gate.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"scoring"),
            (b"accept-encoding", accept),
            (b"authorization", b"Bearer " + TOKEN.encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("scoring", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


def _headers(messages: list[Message]) -> dict[bytes, bytes]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    return {k.lower(): v for k, v in start["headers"]}


async def test_event_stream_is_never_gzipped() -> None:
    messages = await _call("/test/sse", b"gzip", asyncio.Event())
    assert b"content-encoding" not in _headers(messages)
    bodies = [m["body"] for m in messages if m["type"] == "http.response.body" and m["body"]]
    # Each event is its own body message, unchanged: nothing waits to fill a gzip block.
    assert len(bodies) == 2 and all(b.startswith(b"data: ") for b in bodies)


async def test_streamed_json_is_gzipped_when_accepted() -> None:
    # The control: the same stream as JSON is encoded, so the test above can fail.
    messages = await _call("/test/big", b"gzip", asyncio.Event())
    assert _headers(messages)[b"content-encoding"] == b"gzip"
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert gzip.decompress(body).count(b"data: ") == 2
