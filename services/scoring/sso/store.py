"""Sign-ins under way at the provider: their state, nonce and PKCE verifier, kept server-side."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import String, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.scoring.sso.domain import LoginStart
from shared.db import Base


class OidcLogin(Base):
    """One sign-in started in one browser: keyed by the SHA-256 of the random value of that
    browser's short-lived cookie, so a callback from any other browser finds nothing."""

    __tablename__ = "oidc_logins"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


def browser_key_digest(browser_key: str) -> str:
    return hashlib.sha256(b"kpi-oidc\x00" + browser_key.encode()).hexdigest()


async def save_login(
    session: AsyncSession, browser_key: str, login: LoginStart, ttl: dt.timedelta
) -> None:
    """Keep ``login`` until ``ttl`` from now; sign-ins left unfinished before now are dropped."""
    now = (await session.execute(select(func.now()))).scalar_one()
    session.add(
        OidcLogin(
            id_hash=browser_key_digest(browser_key),
            state=login.state,
            nonce=login.nonce,
            code_verifier=login.verifier,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    await session.flush()
    await session.execute(delete(OidcLogin).where(OidcLogin.expires_at < now))


async def take_login(session: AsyncSession, browser_key: str) -> LoginStart | None:
    """The browser's sign-in, removed (a callback is answered once), or None when there is
    none or it has expired."""
    row = (
        await session.execute(
            delete(OidcLogin)
            .where(OidcLogin.id_hash == browser_key_digest(browser_key))
            .returning(
                OidcLogin.state, OidcLogin.nonce, OidcLogin.code_verifier, OidcLogin.expires_at
            )
        )
    ).first()
    if row is None:
        return None
    now = (await session.execute(select(func.now()))).scalar_one()
    if row.expires_at <= now:
        return None
    return LoginStart(row.state, row.nonce, row.code_verifier)
