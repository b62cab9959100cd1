"""Test support for the alert SSE stream: a background reader parsing blocks like EventSource."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class Block:
    """One SSE block as a browser's EventSource parser sees it."""

    id: int | None
    event: str | None
    data: Any


@dataclass
class Stream:
    """A background SSE reader: every block, in arrival order.

    `client` lets many streams share one connection pool; without it each opens its own.
    """

    url: str
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    status: int | None = None
    body: bytes = b""
    task: asyncio.Task[None] | None = None
    client: httpx.AsyncClient | None = None

    def open(self) -> Stream:
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            ac = self.client
            if ac is None:
                ac = await stack.enter_async_context(
                    httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
                )
            resp = await stack.enter_async_context(
                ac.stream("GET", self.url, headers=self.headers, params=self.params)
            )
            self.status = resp.status_code
            if resp.status_code != 200:
                self.body = await resp.aread()
                return
            lines: list[str] = []
            async for line in resp.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                fields: dict[str, str] = {}
                for item in lines:
                    name, _, value = item.partition(":")
                    if name:  # a leading ":" is a comment
                        fields[name] = value.removeprefix(" ")
                lines = []
                if "id" in fields or "data" in fields:
                    self.blocks.append(
                        Block(
                            int(fields["id"]) if "id" in fields else None,
                            fields.get("event"),
                            orjson.loads(fields["data"]) if "data" in fields else None,
                        )
                    )

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    @property
    def ended(self) -> bool:
        """The server ended the stream (or it failed)."""
        return self.task is not None and self.task.done()

    @property
    def alerts(self) -> list[Block]:
        return [b for b in self.blocks if b.event == "alert"]

    @property
    def last_id(self) -> int:
        ids = [b.id for b in self.blocks if b.id is not None]
        assert ids, self.blocks
        return ids[-1]
