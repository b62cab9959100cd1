"""A real OpenID Connect provider on a free loopback port for the single sign-on tests.

oidc-provider-mock (a Flask app on authlib) issues real codes and RS256 ID tokens from its own
key, serves discovery and JWKS, and shows an authorization form where a user's ``sub`` is
entered. It accepts PKCE parameters but does not check them (0.3.x, and 0.4.x too), so
``ProviderLayer`` in front of it does what RFC 7636 asks of a provider: it remembers each
code's S256 challenge and refuses a token request whose ``code_verifier`` does not match.
The layer also lets a test make the token endpoint misbehave (fail, or answer another token).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import werkzeug.serving
from oidc_provider_mock import app as provider_app

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Wsgi = Callable[[Environ, StartResponse], Iterable[bytes]]


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class ProviderLayer:
    """WSGI middleware: PKCE checks, a record of token requests, token-endpoint tampering."""

    app: Wsgi
    challenges: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    # Set by a test: the token endpoint answers this status instead, or its JSON is rewritten.
    fail_token: int | None = None
    rewrite_token: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize" and environ["REQUEST_METHOD"] == "POST":
            return self._authorize(environ, start_response)
        if path == "/oauth2/token" and environ["REQUEST_METHOD"] == "POST":
            return self._token(environ, start_response)
        return self.app(environ, start_response)

    def _authorize(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        challenge = (query.get("code_challenge"), query.get("code_challenge_method"))

        def remember(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            for name, value in headers:
                if name.lower() == "location":
                    code = parse_qs(urlsplit(value).query).get("code")
                    if code:
                        with self.lock:
                            self.challenges[code[0]] = challenge
            return start_response(status, headers, *rest)

        return self.app(environ, remember)

    def _token(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size)
        environ["wsgi.input"] = io.BytesIO(body)
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.lock:
            self.token_requests.append(
                {**form, "authorization": environ.get("HTTP_AUTHORIZATION", "")}
            )
            challenge, method = self.challenges.pop(form.get("code", ""), (None, None))
        if self.fail_token is not None:
            return _json(start_response, self.fail_token, {"error": "temporarily_unavailable"})
        if challenge is not None:
            verifier = form.get("code_verifier") or ""
            if method != "S256" or s256(verifier) != challenge:
                error = {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                return _json(start_response, 400, error)
        if self.rewrite_token is None:
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            captured["status"] = int(status.split()[0])
            return lambda data: None

        answer = json.loads(b"".join(self.app(environ, keep)))
        if captured["status"] == 200:
            answer = self.rewrite_token(answer)
        return _json(start_response, captured["status"], answer)


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request"}.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


@dataclass
class Provider:
    url: str
    layer: ProviderLayer


@contextmanager
def running_provider() -> Iterator[Provider]:
    """The provider on 127.0.0.1 and a free port, in a thread, until the block ends."""
    layer = ProviderLayer(provider_app(require_nonce=True, issue_refresh_token=False))
    server = werkzeug.serving.make_server("127.0.0.1", 0, layer, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield Provider(f"http://127.0.0.1:{server.server_port}", layer)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
