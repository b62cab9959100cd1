"""The HTTP guard on the three real services: 50 MB bodies, tokens before bodies, headers.

Requests are written on a raw socket, so a body can be declared and never sent, or streamed
chunk by chunk while the answer is read: a server that waited for (or buffered) the body
would time out here or show it in its peak memory (``VmHWM``, reset before each request).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.security.conftest import Platform

T = TypeVar("T")
MB = 1024 * 1024
HUGE = 50 * MB
# A JSON body that every write route below would have to parse whole.
HUGE_HEAD = b'{"name": "'

# (service, method, path) of routes that take a JSON body, in each service.
WRITE_ROUTES = [
    ("scoring", "PUT", "/v1/teams/guard-team"),
    ("scoring", "PUT", "/v1/specialists/guard-s"),
    ("scoring", "POST", "/v1/specialists/guard-s/meetings"),
    ("scoring", "PUT", "/v1/specialists/guard-s/plans/2026Q1"),
    ("scoring", "POST", "/v1/specialists/guard-s/plans/2026Q1/status"),
    ("scoring", "POST", "/v1/specialists/guard-s/plans/2026Q1/notes"),
    ("scoring", "PUT", "/v1/specialists/guard-s/meetings/1"),
    ("scoring", "PATCH", "/v1/specialists/guard-s/meetings/1"),
    ("scoring", "PUT", "/v1/specialists/guard-s/appraisals/2026Q1/comment"),
    ("scoring", "PUT", "/v1/specialists/guard-s/appraisals/2026Q1/decision"),
    ("scoring", "POST", "/v1/dashboard/notify/silences"),
    ("notify", "POST", "/v1/channels"),
    ("notify", "PUT", "/v1/channels/guard-c"),
    ("notify", "POST", "/v1/silences"),
    ("notify", "POST", "/v1/alerts/guard-a/ack"),
    ("ingest", "POST", "/v1/events"),
]
PUBLIC = {"/healthz", "/readyz"}
SIGN_IN = {("POST", "/v1/auth/login"), ("GET", "/v1/auth/methods")}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the request head to the complete answer

    def json(self) -> dict[str, object]:
        parsed = orjson.loads(self.body)
        assert isinstance(parsed, dict)
        return parsed


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed without an answer (got {buf[:200]!r})")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return status, headers, rest[:length]


def exchange(
    base: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Iterable[bytes] = (),
    *,
    chunked: bool = False,
    hold_open: bool = False,
    timeout: float = 10.0,
) -> Answer:
    """One request on a raw socket; the body is sent by a thread while the answer is read.

    ``hold_open``: after the body, send nothing more (no end of a chunked body) until the
    answer has arrived.
    """
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    sock = socket.create_connection((host, port), timeout=timeout)
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    answered = threading.Event()

    def pump() -> None:
        try:
            for chunk in body:
                if answered.is_set():
                    return
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            if hold_open:
                answered.wait(timeout)
            elif chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            return  # the server answered and closed: what a limit is allowed to do

    sock.sendall((head + "\r\n").encode())
    started = time.monotonic()
    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    try:
        status, answer_headers, answer = _read_answer(sock)
        return Answer(status, answer_headers, answer, time.monotonic() - started)
    finally:
        answered.set()
        sock.close()
        sender.join(timeout)


def huge_body(total: int = HUGE, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """A 50 MB JSON string value, produced as it is sent (the test holds none of it)."""
    yield HUGE_HEAD
    filler = b"x" * chunk
    sent = len(HUGE_HEAD)
    while sent < total - 2:
        piece = filler[: min(chunk, total - 2 - sent)]
        sent += len(piece)
        yield piece
    yield b'"}'


def _status_file(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def peak_growth(pid: int, run: Callable[[], T]) -> tuple[int, T]:
    """Bytes the process's peak RSS rose above its RSS before ``run()``, and run's result."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_file(pid)["VmRSS"]
    result = run()
    return _status_file(pid)["VmHWM"] - before, result


def _pid(platform: Platform, service: str) -> int:
    svc = next(s for s in platform.services if s.name == service)
    assert svc.proc is not None
    return svc.proc.pid


def _limit_env(service: str, path: str) -> str:
    if (service, path) == ("ingest", "/v1/events"):
        return "KPI_INGEST_MAX_BODY_BYTES"
    return "KPI_HTTP_MAX_BODY_BYTES"


@pytest.mark.parametrize(("service", "method", "path"), WRITE_ROUTES)
def test_a_declared_50mb_body_is_answered_before_a_byte_of_it_is_sent(
    platform: Platform, service: str, method: str, path: str
) -> None:
    base = platform.urls[service]
    declared = {"Content-Type": "application/json", "Content-Length": str(HUGE)}
    for who in (None, "bad"):
        auth = {} if who is None else {"Authorization": "Bearer kpi_not_a_token"}
        answer = exchange(base, method, path, {**declared, **auth})
        assert answer.status == 401, (who, answer)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.seconds < 3, answer
    answer = exchange(base, method, path, {**declared, **platform.headers("admin")})
    assert answer.status == 413, answer
    body = answer.json()
    assert body["code"] == "body_too_large" and _limit_env(service, path) in str(body["detail"])
    assert isinstance(body["limit_bytes"], int) and body["limit_bytes"] < HUGE
    assert answer.seconds < 3, answer


@pytest.mark.parametrize("service", ["ingest", "scoring", "notify"])
def test_a_streamed_50mb_body_is_cut_at_the_limit_and_memory_stays_flat(
    platform: Platform, service: str
) -> None:
    _, method, path = next(r for r in WRITE_ROUTES if r[0] == service)
    base, pid = platform.urls[service], _pid(platform, service)
    json_type = {"Content-Type": "application/json"}
    peaks = {}
    for who, expected in ((None, 401), ("admin", 413)):
        headers = {**json_type, **platform.headers(who or "")}

        def send(headers: dict[str, str] = headers) -> Answer:
            return exchange(base, method, path, headers, huge_body(), chunked=True, timeout=30)

        growth, answer = peak_growth(pid, send)
        assert answer.status == expected, answer
        assert answer.seconds < 10, answer
        peaks[who] = growth
        # The limit (5 MB for events, 1 MB elsewhere) plus the server's read buffers; a
        # buffered body would show 50 MB or more.
        assert growth < 16 * MB, f"{service} peak RSS grew {growth / MB:.1f} MB ({who})"
    print(f"{service} peak RSS growth over a 50 MB body: "
          + ", ".join(f"{w or 'no token'} {g / MB:.1f} MB" for w, g in peaks.items()))  # fmt: skip


@pytest.mark.parametrize("service", ["ingest", "scoring", "notify"])
def test_a_body_stopping_just_past_the_limit_is_answered_without_waiting_for_the_rest(
    platform: Platform, service: str
) -> None:
    _, method, path = next(r for r in WRITE_ROUTES if r[0] == service)
    limit = 5 * MB if service == "ingest" else MB
    # The client sends limit + 1 bytes and then nothing: no end of the chunked body ever.
    part = [HUGE_HEAD, b"x" * (limit + 1 - len(HUGE_HEAD))]
    headers = {"Content-Type": "application/json", **platform.headers("admin")}

    answer = exchange(
        platform.urls[service], method, path, headers, part, chunked=True, hold_open=True
    )
    assert answer.status == 413, answer
    assert answer.json()["limit_bytes"] == limit
    assert answer.seconds < 5, answer


def test_events_keep_their_larger_limit_and_other_routes_the_general_one(
    platform: Platform,
) -> None:
    admin = {**platform.headers("admin"), "Content-Type": "application/json"}
    event = orjson.dumps(
        {"event_id": "guard-big-1", "type": "ticket.reopened", "ticket_id": "T-guard",
         "occurred_at": "2026-01-05T09:00:00Z"}
    ) + b" " * (2 * MB)  # fmt: skip
    r = httpx.post(platform.urls["ingest"] + "/v1/events", content=event, headers=admin)
    assert r.status_code == 202, r.text[:300]
    team = b'{"name": "big", "supervisor": null}' + b" " * (2 * MB)
    r = httpx.put(platform.urls["scoring"] + "/v1/teams/guard-big", content=team, headers=admin)
    assert r.status_code == 413 and "KPI_HTTP_MAX_BODY_BYTES" in r.text, r.text[:300]
    small = b'{"name": "big", "supervisor": null}' + b" " * (MB // 2)
    r = httpx.put(platform.urls["scoring"] + "/v1/teams/guard-big", content=small, headers=admin)
    assert r.status_code == 200, r.text[:300]


def _operations(base: str) -> Iterator[tuple[str, str]]:
    spec = httpx.get(base + "/openapi.json", timeout=10).json()
    for path, methods in spec["paths"].items():
        for method in methods:
            yield method.upper(), path.replace("{", "").replace("}", "")


@pytest.mark.parametrize("service", ["ingest", "scoring", "notify"])
def test_every_route_refuses_a_missing_or_bad_token_before_reading_its_body(
    platform: Platform, service: str
) -> None:
    base = platform.urls[service]
    declared = {"Content-Type": "application/json", "Content-Length": str(HUGE)}
    checked = 0
    for method, path in _operations(base):
        if path in PUBLIC:
            continue
        # A helpdesk's signed webhook authenticates itself from the body it never gets to
        # read here: the declared size is refused first.
        signed = method == "POST" and path.startswith("/v1/webhooks/")
        # Signing in needs no credentials either (nor what the sign-in page offers): the body
        # limit answers first.
        signed = signed or (method, path) in SIGN_IN
        for auth in ({}, {"Authorization": "Bearer kpi_not_a_token"}, {"Authorization": "Basic x"}):
            answer = exchange(base, method, path, {**declared, **auth})
            assert answer.status == (413 if signed else 401), (method, path, auth, answer)
            assert answer.seconds < 3, (method, path, answer)
            checked += 1
    assert checked >= 9  # ingest has the fewest routes: three
    # Public routes answer as before, without a token.
    assert httpx.get(base + "/healthz").status_code == 200
    assert httpx.get(base + "/metrics").status_code == 200
    assert httpx.get(base + "/openapi.json").status_code == 200
    assert httpx.get(base + "/docs").status_code == 200
    if service == "scoring":
        assert httpx.get(base + "/").status_code == 307
        assert httpx.get(base + "/ui/").status_code == 200
        assert httpx.get(base + "/ui/js/app.js").status_code == 200
        # A dot segment never borrows the dashboard's public prefix.
        assert exchange(base, "GET", "/ui/../v1/teams", {}).status != 200


def _directives(csp: str) -> dict[str, str]:
    out = {}
    for part in csp.split(";"):
        name, _, value = part.strip().partition(" ")
        out[name] = value
    return out


@pytest.mark.parametrize("service", ["ingest", "scoring", "notify"])
def test_security_headers_on_every_answer(platform: Platform, service: str) -> None:
    base = platform.urls[service]
    answers = [
        httpx.get(base + "/healthz"),
        httpx.get(base + "/v1/whoami", headers=platform.headers("admin")),
        httpx.get(base + "/v1/whoami"),  # 401
    ]
    if service == "scoring":
        answers += [httpx.get(base + "/ui/"), httpx.get(base + "/ui/js/app.js")]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["x-frame-options"] == "DENY", r.url
        assert r.headers["referrer-policy"] == "no-referrer", r.url
        csp = _directives(r.headers["content-security-policy"])
        assert csp["frame-ancestors"] == "'none'", r.url
        if r.url.path.startswith("/ui/"):
            assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'", csp
            assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'", csp
        else:
            assert csp["default-src"] == "'none'", (r.url, csp)
    docs = _directives(httpx.get(base + "/docs").headers["content-security-policy"])
    assert docs["frame-ancestors"] == "'none'"
