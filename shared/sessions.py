"""Dashboard sessions: server-side rows keyed by the SHA-256 of a random id, and their lookup."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import ForeignKey, String, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared.accounts import SessionPolicy, session_digest
from shared.auth import Principal, Role
from shared.db import Base
from shared.directory import Team
from shared.users import User


class UserSession(Base):
    __tablename__ = "user_sessions"

    # Only the SHA-256 of the id the cookie carries: a copy of the table signs nobody in.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    # created_at + KPI_SESSION_MAX_HOURS: the latest moment it may be used.
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


def principal_of(
    role: str, username: str, team_ids: list[str] | None, specialist_id: str | None
) -> Principal:
    """The principal a user acts as: a specialist is bound to its specialist id (its subject,
    like a specialist token's), the others act under their username."""
    if role == Role.SPECIALIST:
        return Principal(Role.SPECIALIST, specialist_id or "")
    teams = frozenset(team_ids or ()) if role == Role.SUPERVISOR else frozenset()
    return Principal(Role(role), username, teams)


async def principal_for(session: AsyncSession, user: User) -> Principal:
    """The principal of ``user`` as the guard resolves it: a supervisor also owns the teams
    that name them as supervisor."""
    teams = list(user.team_ids or ())
    if user.role == Role.SUPERVISOR:
        owned = await session.execute(select(Team.id).where(Team.supervisor == user.username))
        teams.extend(owned.scalars())
    return principal_of(user.role, user.username, teams, user.specialist_id)


async def start_session(
    session: AsyncSession, user: User, policy: SessionPolicy
) -> tuple[str, UserSession]:
    """A new session of ``user``; the id (for the cookie) is returned once, never stored."""
    session_id = secrets.token_urlsafe(32)
    now = (await session.execute(select(func.now()))).scalar_one()
    row = UserSession(
        id_hash=session_digest(session_id),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + policy.max_age,
    )
    session.add(row)
    await session.flush()
    # Sessions that can no longer be used are of no further interest.
    await session.execute(
        delete(UserSession).where(
            (UserSession.expires_at < now) | (UserSession.last_seen_at < now - policy.idle)
        )
    )
    return session_id, row


async def end_session(session: AsyncSession, session_id: str) -> None:
    await session.execute(
        delete(UserSession).where(UserSession.id_hash == session_digest(session_id))
    )


@dataclass(frozen=True)
class SignedIn:
    """A live session and its user."""

    user: User
    row: UserSession


async def signed_in(
    session: AsyncSession, session_id: str, policy: SessionPolicy
) -> SignedIn | None:
    """The live session with this id and its enabled user, or None."""
    found = (
        await session.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(
                UserSession.id_hash == session_digest(session_id),
                User.disabled_at.is_(None),
                UserSession.expires_at > func.now(),
                UserSession.last_seen_at > func.now() - policy.idle,
            )
        )
    ).first()
    return None if found is None else SignedIn(user=found[1], row=found[0])


# One round trip: the session is live (not expired, not idle too long, its user enabled), its
# last use is now, and a supervisor's teams include those naming them supervisor.
_LOOKUP = text(
    """
    WITH live AS (
        UPDATE user_sessions s SET last_seen_at = now()
        FROM users u
        WHERE s.id_hash = :digest AND u.id = s.user_id AND u.disabled_at IS NULL
          AND s.expires_at > now() AND s.last_seen_at > now() - CAST(:idle AS interval)
        RETURNING u.role, u.username, u.team_ids, u.specialist_id
    )
    SELECT role, username, specialist_id,
           CASE WHEN role = 'supervisor' THEN
               team_ids || ARRAY(SELECT t.id FROM teams t WHERE t.supervisor = live.username)
           ELSE team_ids END AS teams
    FROM live
    """
)


def session_lookup(
    sessionmaker: async_sessionmaker[AsyncSession], policy: SessionPolicy
) -> Callable[[str], Awaitable[Principal | None]]:
    """The Authenticator's resolver of session digests (shared.auth.SessionLookup)."""

    async def lookup(digest: str) -> Principal | None:
        async with sessionmaker() as session:
            row = (await session.execute(_LOOKUP, {"digest": digest, "idle": policy.idle})).first()
            await session.commit()
        if row is None:
            return None
        return principal_of(row.role, row.username, list(row.teams or ()), row.specialist_id)

    return lookup
