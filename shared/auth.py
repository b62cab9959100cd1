"""Bearer-token authentication and role checks; tokens are stored only as SHA-256 hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from fastapi import HTTPException, Request, status
from sqlalchemy import String, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.directory import Team

TOKEN_PREFIX = "kpi_"


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
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


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a fast unsalted hash cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: role, a subject name, and for supervisors the teams they own."""

    role: Role
    subject: str
    team_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def can_see_team(self, team_id: str | None) -> bool:
        return self.is_admin or (team_id is not None and team_id in self.team_ids)


async def issue_token(
    session: AsyncSession,
    role: Role,
    subject: str,
    team_ids: Iterable[str] = (),
    description: str | None = None,
) -> tuple[str, ApiToken]:
    """Create a token; the clear text is returned once and never stored."""
    token = new_token()
    row = ApiToken(
        token_hash=hash_token(token),
        role=role.value,
        subject=subject,
        team_ids=sorted(set(team_ids)),
        description=description,
    )
    session.add(row)
    await session.flush()
    return token, row


class Authenticator:
    """Resolves bearer tokens to principals with a short cache to keep lookups off hot paths."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bootstrap_admin_token: str | None,
        cache_seconds: float = 5.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._bootstrap_hash = hash_token(bootstrap_admin_token) if bootstrap_admin_token else None
        self._cache_seconds = cache_seconds
        # digest -> (monotonic time of the lookup, its answer)
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, token: str, max_age: float | None = None) -> Principal | None:
        """The token's principal, None when unknown or revoked.

        A cached answer is used while younger than ``max_age`` seconds (default: the cache
        time); long-lived streams re-check with ``max_age=0`` so that a revocation or a team
        change is seen at once.
        """
        digest = hash_token(token)
        if self._bootstrap_hash and hmac.compare_digest(digest, self._bootstrap_hash):
            return Principal(Role.ADMIN, "bootstrap-admin")
        now = time.monotonic()
        cached = self._cache.get(digest)
        limit = self._cache_seconds if max_age is None else min(max_age, self._cache_seconds)
        if cached and now - cached[0] < limit:
            return cached[1]
        principal = await self._lookup(digest)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal

    async def _lookup(self, digest: str) -> Principal | None:
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(ApiToken).where(
                        ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)
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


def bearer_token(request: Request) -> str:
    """The request's bearer token; 401 when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


async def authorise(
    authenticator: Authenticator, token: str, roles: Iterable[Role], max_age: float | None = None
) -> Principal:
    """The token's principal if it holds one of ``roles`` (admin always passes): 401 for an
    unknown or revoked token, 403 for another role."""
    allowed = {Role.ADMIN, *roles}
    principal = await authenticator.resolve(token, max_age)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="invalid or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if principal.role not in allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"role '{principal.role}' may not call this route "
            f"(needs {' or '.join(sorted(r.value for r in allowed))})",
        )
    return principal


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """FastAPI dependency: the caller must hold one of ``roles`` (admin always passes)."""

    async def dependency(request: Request) -> Principal:
        token = bearer_token(request)
        authenticator: Authenticator = request.app.state.authenticator
        return await authorise(authenticator, token, roles)

    return dependency
