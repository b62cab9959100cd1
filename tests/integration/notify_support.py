"""Test support for notify: a real HTTP receiver in a thread, snapshots, polling helpers."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpi.stack import ServiceProcess
from services.scoring.kpi.lines import DEFAULT_LINES
from shared.auth import Role, issue_token
from shared.db import session_scope

# Fixture types (the fixtures live in tests/integration/conftest.py).
Start = Callable[[dict[str, str]], ServiceProcess]
ProduceSnaps = Callable[[list[dict[str, Any]]], Awaitable[None]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Records every request; `behaviour(req) -> (status, body, delay)` decides the answer."""

    behaviour: Callable[[Received], tuple[int, bytes, float]] | None = None
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Received(
                    self.path, dict(self.headers.items()), self.rfile.read(length), time.time()
                )
                status, body, delay = 200, b'{"errcode":0,"errmsg":"ok"}', 0.0
                if outer.behaviour is not None:
                    status, body, delay = outer.behaviour(req)
                with outer.lock:
                    outer.requests.append(req)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def keys(self) -> list[str]:
        return [r.headers.get("X-KPI-Delivery", "") for r in self.snapshot()]


class Switch:
    """Receiver behaviour: HTTP 500 until `up` is set (a receiver that is down, then fixed)."""

    def __init__(self) -> None:
        self.up = False

    def __call__(self, req: Received) -> tuple[int, bytes, float]:
        return (200, b"{}", 0.0) if self.up else (500, b"receiver down", 0.0)


def kpi_block(kpi: str, value: float | None, den: int, grade: str) -> dict[str, Any]:
    line = DEFAULT_LINES[kpi]
    return {
        "value": value,
        "numerator": None if value is None else value * den,
        "denominator": den,
        "grade": grade,
        "qualified": line.qualified,
        "excellent": line.excellent,
        "min_samples": line.min_samples,
    }


def snapshot(
    specialist_id: str,
    at: dt.datetime,
    *,
    team_id: str | None = None,
    csat: float | None = 0.5,
    samples: int = 20,
    reason: str = "events",
) -> dict[str, Any]:
    """A kpi.scores message with one interesting KPI (customer_satisfaction)."""
    if csat is None or samples < 10:
        grade = "insufficient_data"
    elif csat >= 0.9:
        grade = "excellent"
    elif csat >= 0.85:
        grade = "qualified"
    else:
        grade = "unqualified"
    return {
        "specialist_id": specialist_id,
        "team_id": team_id,
        "window": {"name": "30d", "from": "2026-01-01", "to": "2026-01-30", "timezone": "UTC"},
        "as_of": at.date().isoformat(),
        "computed_at": at.isoformat(),
        "reason": reason,
        "kpis": {
            "customer_satisfaction": kpi_block("customer_satisfaction", csat, samples, grade),
            "resolution_rate": kpi_block("resolution_rate", 0.97, 30, "excellent"),
        },
    }


class FakeClock:
    """Injectable clock the tests move by hand."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


async def seed_two_teams(sm: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Teams north (supervisor ann, specialist n1 Nina) and south (bo, s1 Sam); the tokens of
    ann, bo and a service ("service")."""
    async with session_scope(sm) as s:
        await s.execute(
            text(
                "INSERT INTO teams (id, name, supervisor) VALUES ('north', 'North', 'ann'), "
                "('south', 'South', 'bo')"
            )
        )
        await s.execute(
            text(
                "INSERT INTO specialists (id, name, team_id) VALUES ('n1', 'Nina', 'north'), "
                "('s1', 'Sam', 'south')"
            )
        )
        ann, _ = await issue_token(s, Role.SUPERVISOR, "ann")
        bo, _ = await issue_token(s, Role.SUPERVISOR, "bo")
        service, _ = await issue_token(s, Role.SERVICE, "zendesk")
    return {"ann": ann, "bo": bo, "service": service}


def conforms(model: type[BaseModel], body: Any) -> Any:
    """``body`` as served is exactly the documented model: no undeclared field (extra=forbid),
    none missing, and it serializes back to the same JSON (times and numbers as served)."""
    parsed = model.model_validate(body)
    again = parsed.model_dump(mode="json")
    assert again == body, f"served {body!r}\nmodel   {again!r}"
    return parsed
