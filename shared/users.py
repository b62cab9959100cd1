"""User accounts of people and failed sign-ins: tables and their SQL (scoring's API, the CLI)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.accounts import SSO_NO_PASSWORD, Account, AccountError, username_key
from shared.db import Base


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("sso_issuer", "sso_subject", name="uq_users_sso"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(128))
    # What makes two usernames one login (shared.accounts.username_key); unique.
    username_key: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    team_ids: Mapped[list[str]] = mapped_column(ARRAY(String(128)), default=list)
    specialist_id: Mapped[str | None] = mapped_column(String(128))
    # None for an account that signs in by single sign-on only (sso_issuer and sso_subject).
    password_hash: Mapped[str | None] = mapped_column(String(512))
    # The OpenID Connect provider and its subject ("sub") this account is; unique together.
    sso_issuer: Mapped[str | None] = mapped_column(String(512))
    sso_subject: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    last_login_at: Mapped[dt.datetime | None]
    disabled_at: Mapped[dt.datetime | None]

    @property
    def account(self) -> Account:
        return Account(self.role, tuple(self.team_ids or ()), self.specialist_id)

    @property
    def is_sso(self) -> bool:
        return self.sso_subject is not None


class LoginFailure(Base):
    """One failed sign-in, counted for its username and for its client address (both hashed:
    a password typed into the username field is never stored)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), index=True)


class UsernameTaken(Exception):
    """Another account already has this login (usernames differ by more than case)."""


async def any_user(session: AsyncSession) -> bool:
    return (await session.execute(select(User.id).limit(1))).first() is not None


async def get_user(session: AsyncSession, username: str, *, lock: bool = False) -> User | None:
    """The account whose login is ``username`` in any case."""
    query = select(User).where(User.username_key == username_key(username))
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def get_sso_user(session: AsyncSession, issuer: str, subject: str) -> User | None:
    """The account of the provider's subject, locked for this transaction's update."""
    query = (
        select(User).where(User.sso_issuer == issuer, User.sso_subject == subject).with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.execute(select(User).order_by(User.username_key))).scalars())


async def create_user(
    session: AsyncSession,
    username: str,
    account: Account,
    password_hash: str | None,
    display_name: str | None = None,
    *,
    sso: tuple[str, str] | None = None,
) -> User:
    """Insert an account (``account`` already checked); UsernameTaken when the login exists
    (or, for ``sso`` (issuer, subject), when that identity already has an account)."""
    user = User(
        username=username,
        username_key=username_key(username),
        display_name=display_name,
        role=account.role,
        team_ids=list(account.team_ids),
        specialist_id=account.specialist_id,
        password_hash=password_hash,
        sso_issuer=sso[0] if sso else None,
        sso_subject=sso[1] if sso else None,
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        raise UsernameTaken(username) from None
    return user


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    account: Account | None = None,
    display_name: str | None = None,
    disabled: bool | None = None,
) -> User:
    """Change what is given; disabling ends the user's sessions at once."""
    if account is not None:
        user.role = account.role
        user.team_ids = list(account.team_ids)
        user.specialist_id = account.specialist_id
    if display_name is not None:
        user.display_name = display_name or None
    if disabled is True and user.disabled_at is None:
        user.disabled_at = await _now(session)
    elif disabled is False:
        user.disabled_at = None
    user.updated_at = await _now(session)
    await session.flush()
    if user.disabled_at is not None:
        await end_sessions_of(session, user.id)
    return user


async def set_password(session: AsyncSession, user: User, password_hash: str) -> None:
    """Store a new hash and end every session of the user (a reset locks out who had it).

    AccountError for an SSO account: its password lives at the identity provider, and a
    local one would open a second way in that the provider's disabling does not close.
    """
    if user.is_sso:
        raise AccountError("password", SSO_NO_PASSWORD)
    user.password_hash = password_hash
    user.updated_at = await _now(session)
    await session.flush()
    await end_sessions_of(session, user.id)


async def rehash_password(session: AsyncSession, user: User, password_hash: str) -> None:
    """The same password under new hash parameters: sessions go on."""
    user.password_hash = password_hash
    await session.flush()


async def end_sessions_of(session: AsyncSession, user_id: uuid.UUID) -> None:
    # The sessions table is shared.sessions'; named here so disabling needs no import cycle.
    await session.execute(
        text("DELETE FROM user_sessions WHERE user_id = :user_id"), {"user_id": user_id}
    )


async def _now(session: AsyncSession) -> dt.datetime:
    """The database's clock: every moment of an account is on one clock."""
    return (await session.execute(select(func.now()))).scalar_one()


# --- failed sign-ins -----------------------------------------------------------------------


def throttle_keys(username: str, address: str) -> tuple[str, str]:
    """The two keys a failed sign-in counts against: its login, and its client address."""

    def digest(kind: str, value: str) -> str:
        return hashlib.sha256(f"{kind}\x00{value}".encode()).hexdigest()

    return digest("user", username_key(username)), digest("address", address)


async def recent_failures(
    session: AsyncSession, keys: Sequence[str], window: dt.timedelta
) -> tuple[dt.datetime, dict[str, list[dt.datetime]]]:
    """The database's now and, per key, its failures within ``window`` before it."""
    now = await _now(session)
    rows = await session.execute(
        select(LoginFailure.key, LoginFailure.failed_at).where(
            LoginFailure.key.in_(keys), LoginFailure.failed_at > now - window
        )
    )
    found: dict[str, list[dt.datetime]] = {key: [] for key in keys}
    for key, at in rows:
        found[key].append(at)
    return now, found


async def record_failure(session: AsyncSession, keys: Iterable[str], window: dt.timedelta) -> None:
    """Count a failed sign-in for each key, and forget failures that no window needs."""
    session.add_all(LoginFailure(key=key) for key in keys)
    await session.flush()
    await session.execute(delete(LoginFailure).where(LoginFailure.failed_at < func.now() - window))


async def clear_failures(session: AsyncSession, key: str) -> None:
    """A successful sign-in forgets its username's failures (not its address's)."""
    await session.execute(delete(LoginFailure).where(LoginFailure.key == key))


async def touch_login(session: AsyncSession, user: User) -> None:
    user.last_login_at = await _now(session)
    await session.flush()
