"""Authentication (bearer tokens, dashboard session cookies) and role checks.

Tokens and session ids are stored only as SHA-256 hashes. A request carrying
``Authorization: Bearer`` is a machine client's; one carrying only the ``kpi_session`` cookie
is a signed-in person's, and its unsafe methods must also carry the session's CSRF token.
Both resolve to the same ``Principal``, so every route and role check works alike.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from fastapi import Request, status
from sqlalchemy import String, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import cookie_parser

from shared.accounts import CSRF_HEADER, SESSION_COOKIE, UNSAFE_METHODS, csrf_token_for
from shared.db import Base
from shared.directory import Team
from shared.http_problems import ProblemError
from shared.poison import is_transient

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "kpi_"


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    SPECIALIST = "specialist"
    SERVICE = "service"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(128))
    team_ids: Mapped[list[str]] = mapped_column(ARRAY(String(128)), default=list)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[dt.datetime | None]
    # None: never expires. An expired token is refused like a revoked one.
    expires_at: Mapped[dt.datetime | None]


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a fast unsalted hash cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: role, a subject name, for supervisors the teams they own, and for a
    specialist the specialist id they are bound to (their subject)."""

    role: Role
    subject: str
    team_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def specialist_id(self) -> str | None:
        """The one specialist a specialist-role caller may see; None for every other role."""
        return self.subject if self.role is Role.SPECIALIST else None

    def can_see_team(self, team_id: str | None) -> bool:
        return self.is_admin or (team_id is not None and team_id in self.team_ids)


async def issue_token(
    session: AsyncSession,
    role: Role,
    subject: str,
    team_ids: Iterable[str] = (),
    description: str | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[str, ApiToken]:
    """Create a token; the clear text is returned once and never stored."""
    token = new_token()
    row = ApiToken(
        token_hash=hash_token(token),
        role=role.value,
        subject=subject,
        team_ids=sorted(set(team_ids)),
        description=description,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return token, row


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    """Every token, newest first (their hashes stay in the database)."""
    rows = await session.execute(select(ApiToken).order_by(ApiToken.created_at.desc()))
    return list(rows.scalars())


async def revoke_token(session: AsyncSession, token_id: uuid.UUID) -> ApiToken | None:
    """Revoke a token (once: a second revocation keeps the first moment); None when unknown."""
    row = await session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        await session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=func.now())
        )
        await session.refresh(row)
    return row


@dataclass(frozen=True)
class Credential:
    """What a request authenticates with: a bearer token, or a dashboard session's id."""

    kind: Literal["bearer", "session"]
    secret: str = field(repr=False)

    @property
    def key(self) -> str:
        """The cache key of its verdict; the two kinds never share one."""
        digest = hash_token(self.secret)
        return digest if self.kind == "bearer" else "session:" + digest


def session_cookie(cookie_header: str | None) -> str | None:
    """The ``kpi_session`` value of a Cookie header, None when absent or unreadable."""
    if not cookie_header or SESSION_COOKIE not in cookie_header:
        return None
    return cookie_parser(cookie_header).get(SESSION_COOKIE) or None


def credential_of(headers: Mapping[str, str]) -> Credential | None:
    """The request's credential: its bearer token when it sends one, else its session cookie."""
    token = bearer_token(headers.get("authorization"))
    if token is not None:
        return Credential("bearer", token)
    if headers.get("authorization"):
        return None  # another scheme (Basic …): refused, whatever cookie comes with it
    session_id = session_cookie(headers.get("cookie"))
    return Credential("session", session_id) if session_id else None


# Resolves the SHA-256 of a session id to its user's principal (None: no such live session);
# shared.sessions provides it, the runtime wires it in.
SessionLookup = Callable[[str], Awaitable["Principal | None"]]


# Verified tokens (and, separately, unknown ones) remembered per process: bounded, so a flood
# of random tokens costs at most this many entries and never evicts the valid ones.
AUTH_CACHE_MAX_ENTRIES = 10_000
# A lookup slower than this is the store's fault (PostgreSQL paused, a network partition): it
# is answered like an outage instead of holding the request for the driver's own timeouts.
AUTH_LOOKUP_TIMEOUT_SECONDS = 3.0
# After a failed lookup, others fail fast for this long rather than each waiting again.
AUTH_RETRY_SECONDS = 1.0
# Lookups running at once per process; the rest queue for a turn. The lookup timeout runs from
# the turn, so a burst of new credentials (200 dashboards opening at once) is not read as an
# outage because its last lookups waited behind the first ones for a pooled connection.
AUTH_LOOKUP_CONCURRENCY = 8
# Where the HTTP guard leaves the caller for ``require`` (the request's ``state``).
PRINCIPAL_STATE_KEY = "kpi_principal"
INVALID_TOKEN = "invalid, revoked or expired token"
AUTH_RETRY_AFTER = "5"
# Problem codes (docs/errors.md): what a client does next differs for each.
MISSING_CREDENTIALS_CODE = "missing_credentials"
INVALID_TOKEN_CODE = "invalid_token"
INVALID_SESSION_CODE = "invalid_session"
CSRF_CODE = "csrf_token_missing"
AUTH_UNAVAILABLE_CODE = "auth_unavailable"
ROLE_NOT_ALLOWED_CODE = "role_not_allowed"


class AuthError(Exception):
    """Why a request is not authenticated: the HTTP status, a reason, its problem code
    (docs/errors.md) and response headers."""

    def __init__(self, status_code: int, detail: str, code: str, headers: dict[str, str]) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.code = code
        self.headers = headers

    def problem(self) -> ProblemError:
        """The same refusal raised inside a route (``require`` without the guard's verdict)."""
        return ProblemError(self.status_code, self.detail, code=self.code, headers=self.headers)


class AuthUnavailable(Exception):
    """The token store cannot be asked and the token is not in the cache (answer 503)."""


class Authenticator:
    """Resolves bearer tokens to principals through a bounded cache of recent verdicts.

    A verified token is re-checked after ``cache_seconds`` (revocation takes effect within
    it). When PostgreSQL cannot be reached, a token verified within ``stale_seconds`` is
    still accepted, so intake keeps working on the broker alone; any other token raises
    ``AuthUnavailable``.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bootstrap_admin_token: str | None,
        cache_seconds: float = 5.0,
        stale_seconds: float = 300.0,
        *,
        max_entries: int = AUTH_CACHE_MAX_ENTRIES,
        lookup_timeout: float = AUTH_LOOKUP_TIMEOUT_SECONDS,
        session_lookup: SessionLookup | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._session_lookup = session_lookup
        self._bootstrap_hash = hash_token(bootstrap_admin_token) if bootstrap_admin_token else None
        self._cache_seconds = cache_seconds
        self._stale_seconds = stale_seconds
        self._max_entries = max_entries
        self._lookup_timeout = lookup_timeout
        # digest -> (monotonic time of the verdict, principal); least recently used first.
        self._valid: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._invalid: OrderedDict[str, float] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Principal | None]] = {}
        self._failing_until = 0.0
        self._lookup_turns = asyncio.Semaphore(AUTH_LOOKUP_CONCURRENCY)

    async def resolve(self, token: str, max_age: float | None = None) -> Principal | None:
        """The token's principal, None when it is unknown, revoked or expired; may raise
        AuthUnavailable.

        A cached verdict is used while younger than ``max_age`` seconds (default: the cache
        time); long-lived streams re-check with ``max_age=0`` so that a revocation or a team
        change is seen at once.
        """
        return await self.resolve_credential(Credential("bearer", token), max_age)

    async def resolve_credential(
        self, credential: Credential, max_age: float | None = None
    ) -> Principal | None:
        """Like ``resolve``, for a bearer token or a session id: a session that was signed out,
        expired or whose user was disabled is None within the cache time."""
        if credential.kind == "session" and self._session_lookup is None:
            return None
        key = credential.key
        if self._bootstrap_hash and hmac.compare_digest(key, self._bootstrap_hash):
            return Principal(Role.ADMIN, "bootstrap-admin")
        now = time.monotonic()
        limit = self._cache_seconds if max_age is None else min(max_age, self._cache_seconds)
        known = self._valid.get(key)
        if known is not None and now - known[0] < limit:
            self._valid.move_to_end(key)
            return known[1]
        refused = self._invalid.get(key)
        if refused is not None and now - refused < limit:
            return None
        try:
            principal = await self._lookup_shared(key)
        except AuthUnavailable:
            if known is not None and now - known[0] < self._stale_seconds:
                return known[1]
            raise
        self._remember(key, principal)
        return principal

    def forget(self, key: str) -> None:
        """Drop the cached verdict of a credential's key (``Credential.key``; a token's is its
        stored hash): this process sees a sign-out or revocation at once."""
        self._valid.pop(key, None)
        self._invalid.pop(key, None)

    def cache_sizes(self) -> tuple[int, int]:
        """Entries held: verified tokens, and unknown or revoked ones (each bounded)."""
        return len(self._valid), len(self._invalid)

    def _remember(self, digest: str, principal: Principal | None) -> None:
        now = time.monotonic()
        if principal is None:
            self._valid.pop(digest, None)
            self._invalid[digest] = now
            self._invalid.move_to_end(digest)
            while len(self._invalid) > self._max_entries:
                self._invalid.popitem(last=False)
        else:
            self._invalid.pop(digest, None)
            self._valid[digest] = (now, principal)
            self._valid.move_to_end(digest)
            while len(self._valid) > self._max_entries:
                self._valid.popitem(last=False)

    async def _lookup_shared(self, digest: str) -> Principal | None:
        """One lookup per token at a time, shared by concurrent requests; fails fast after a
        failure. Shielded: a caller that goes away does not cancel the others' lookup."""
        if time.monotonic() < self._failing_until:
            raise AuthUnavailable("token store unavailable")
        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._guarded_lookup(digest))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda done: self._lookup_done(digest, done))
        return await asyncio.shield(pending)

    def _lookup_done(self, digest: str, done: asyncio.Future[Principal | None]) -> None:
        self._inflight.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have gone away

    async def _guarded_lookup(self, digest: str) -> Principal | None:
        async with self._lookup_turns:
            # A lookup that failed while this one queued means the store is down: fail fast.
            if time.monotonic() < self._failing_until:
                raise AuthUnavailable("token store unavailable")
            return await self._timed_lookup(digest)

    async def _timed_lookup(self, digest: str) -> Principal | None:
        try:
            async with asyncio.timeout(self._lookup_timeout):
                return await self._lookup(digest)
        except Exception as exc:
            self._failing_until = time.monotonic() + AUTH_RETRY_SECONDS
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            # A driver or network failure is expected during an outage; anything else is a bug.
            logger.log(
                logging.WARNING if is_transient(exc) else logging.ERROR,
                "token lookup failed (%s): answering from the cache or 503",
                reason,
                exc_info=not is_transient(exc),
            )
            raise AuthUnavailable(f"token store unavailable ({reason})") from None

    async def _lookup(self, key: str) -> Principal | None:
        session_digest = key.removeprefix("session:")
        if session_digest != key:
            assert self._session_lookup is not None
            return await self._session_lookup(session_digest)
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(ApiToken).where(
                        ApiToken.token_hash == key,
                        ApiToken.revoked_at.is_(None),
                        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > func.now()),
                    )
                )
            ).scalar_one_or_none()
            if row is None:
                return None
            teams = set(row.team_ids or ())
            if row.role == Role.SUPERVISOR:
                # A supervisor also owns every team that names them as its supervisor.
                owned = await session.execute(select(Team.id).where(Team.supervisor == row.subject))
                teams.update(owned.scalars())
            return Principal(Role(row.role), row.subject, frozenset(teams))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, None when absent."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


MISSING_CREDENTIALS = (
    "missing credentials: send 'Authorization: Bearer <token>', or sign in to the dashboard"
)
INVALID_SESSION = "session expired or signed out: sign in again"
CSRF_MISSING = (
    f"missing or wrong {CSRF_HEADER} header: a request that changes something with the "
    "session cookie must send the CSRF token of GET /v1/auth/session"
)


async def authenticate(
    authenticator: Authenticator, headers: Mapping[str, str], method: str = "GET"
) -> Principal:
    """The caller of a request with these headers, or AuthError (401, 403 or 503).

    A bearer token wins over a session cookie. With the cookie alone, an unsafe method must
    carry the session's CSRF token (403 otherwise): a page of another site can make the
    browser send the cookie, never read the token.
    """
    credential = credential_of(headers)
    if credential is None:
        raise AuthError(
            401, MISSING_CREDENTIALS, MISSING_CREDENTIALS_CODE, {"WWW-Authenticate": "Bearer"}
        )
    try:
        principal = await authenticator.resolve_credential(credential)
    except AuthUnavailable as exc:
        raise AuthError(
            503,
            f"cannot verify the credentials now: {exc}; retry later",
            AUTH_UNAVAILABLE_CODE,
            {"Retry-After": AUTH_RETRY_AFTER},
        ) from None
    if principal is None:
        raise _invalid(credential)
    if credential.kind == "session" and method.upper() in UNSAFE_METHODS:
        sent = headers.get(CSRF_HEADER.lower()) or ""
        if not hmac.compare_digest(sent.encode(), csrf_token_for(credential.secret).encode()):
            raise AuthError(403, CSRF_MISSING, CSRF_CODE, {})
    return principal


def _invalid(credential: Credential) -> AuthError:
    """The 401 of an unknown, revoked or expired token or session."""
    if credential.kind == "bearer":
        return AuthError(401, INVALID_TOKEN, INVALID_TOKEN_CODE, {"WWW-Authenticate": "Bearer"})
    return AuthError(401, INVALID_SESSION, INVALID_SESSION_CODE, {"WWW-Authenticate": "Bearer"})


async def authorise(
    authenticator: Authenticator,
    credential: str | Credential,
    roles: Iterable[Role],
    max_age: float | None = None,
) -> Principal:
    """The credential's principal if it holds one of ``roles`` (admin always passes): 401 for
    an unknown, revoked or expired token or session, 403 for another role; AuthUnavailable
    when it cannot be told. A plain string is a bearer token."""
    if isinstance(credential, str):
        credential = Credential("bearer", credential)
    principal = await authenticator.resolve_credential(credential, max_age)
    if principal is None:
        raise _invalid(credential).problem()
    _check_role(principal, roles)
    return principal


def _check_role(principal: Principal, roles: Iterable[Role]) -> None:
    allowed = {Role.ADMIN, *roles}
    if principal.role not in allowed:
        raise ProblemError(
            status.HTTP_403_FORBIDDEN,
            f"role '{principal.role}' may not call this route "
            f"(needs {' or '.join(sorted(r.value for r in allowed))})",
            code=ROLE_NOT_ALLOWED_CODE,
        )


class _Require:
    """The dependency ``require`` returns; ``roles`` tells the OpenAPI document (403 or not)."""

    def __init__(self, roles: Iterable[Role]) -> None:
        self.roles = frozenset({Role.ADMIN, *roles})

    async def __call__(self, request: Request) -> Principal:
        principal = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
        if not isinstance(principal, Principal):
            authenticator: Authenticator = request.app.state.authenticator
            try:
                principal = await authenticate(authenticator, request.headers, request.method)
            except AuthError as exc:
                raise exc.problem() from None
        _check_role(principal, self.roles)
        return principal


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """FastAPI dependency: the caller must hold one of ``roles`` (admin always passes).

    The HTTP guard (shared/http_guard.py) has normally authenticated the request before its
    body was read and left the principal in the request's state: one lookup, not two.
    """
    return _Require(roles)


def required_roles(dependency: object) -> frozenset[Role] | None:
    """The roles a dependency made by ``require`` admits; None for any other callable."""
    return dependency.roles if isinstance(dependency, _Require) else None
