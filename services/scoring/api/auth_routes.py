"""Signing in to the dashboard: login (throttled), logout, who am I, changing one's password."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.api.account_schemas import (
    LoginIn,
    PasswordChangeIn,
    SessionOut,
    UserOut,
)
from services.scoring.api.errors import bad_param
from shared import sessions, users
from shared.accounts import (
    PASSWORD_MAX,
    SESSION_COOKIE,
    SSO_NO_PASSWORD,
    cookie_is_secure,
    csrf_token_for,
    login_retry_after,
    password_problem,
)
from shared.auth import Credential, Principal, Role, credential_of, require
from shared.db import session_scope
from shared.http_problems import ProblemError
from shared.passwords import PasswordGate, Passwords
from shared.runtime import Runtime
from shared.settings import Settings
from shared.text import text_problem

logger = logging.getLogger(__name__)

# One wording for an unknown user, a wrong password and a disabled account.
BAD_LOGIN = "invalid username or password"
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unknown username, wrong password or disabled account (one wording)."},
    422: {"description": "Bad field; `loc` names it."},
    429: {"description": "Too many failed sign-ins for this username or address; Retry-After."},
}
# Any valid token or session: require() alone would admit admins only.
AnyCaller = Annotated[Principal, Depends(require(*Role))]


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def db(request: Request) -> async_sessionmaker[AsyncSession]:
    return runtime_of(request).sessionmaker


def password_gate(request: Request) -> PasswordGate:
    """The app's hashing gate, made on first use with the configured argon2id parameters."""
    gate: PasswordGate | None = getattr(request.app.state, "password_gate", None)
    if gate is None:
        gate = PasswordGate(Passwords(runtime_of(request).settings.password_params))
        request.app.state.password_gate = gate
    return gate


def checked_password(field: str, value: str) -> str:
    """A new password, or the 422 naming ``field`` (the value is never echoed)."""
    problem = password_problem(value)
    if problem is not None:
        raise bad_param("body", field, problem)
    return value


def _given_password(field: str, value: str) -> str:
    """A password being proved: only what cannot be one is refused (its length is no hint)."""
    problem = text_problem(value) or (
        f"must be at most {PASSWORD_MAX} characters" if len(value) > PASSWORD_MAX else None
    )
    if problem is not None:
        raise bad_param("body", field, problem)
    return value


def user_out(user: users.User) -> UserOut:
    return UserOut(
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        team_ids=sorted(user.team_ids or ()),
        specialist_id=user.specialist_id,
        created_at=user.created_at,
        updated_at=user.updated_at,
        last_login_at=user.last_login_at,
        disabled_at=user.disabled_at,
        sso=user.is_sso,
    )


def _set_cookie(response: Response, request: Request, session_id: str, max_age: int) -> None:
    settings = runtime_of(request).settings
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(
            settings.session_cookie_secure, request.url.scheme, settings.public_url
        ),
    )


def _clear_cookie(response: Response, request: Request) -> None:
    _set_cookie(response, request, "", 0)


def _session_out(
    principal: Principal, signed: sessions.SignedIn | None, session_id: str | None, s: Settings
) -> SessionOut:
    return SessionOut(
        role=principal.role.value,
        subject=principal.subject,
        team_ids=sorted(principal.team_ids),
        specialist_id=principal.specialist_id,
        user=user_out(signed.user) if signed else None,
        csrf_token=csrf_token_for(session_id) if signed and session_id else None,
        expires_at=(
            s.session_policy.ends_at(signed.row.created_at, signed.row.last_seen_at)
            if signed
            else None
        ),
    )


def _session_credential(request: Request) -> Credential | None:
    credential = credential_of(request.headers)
    return credential if credential is not None and credential.kind == "session" else None


def _too_many(wait: int) -> HTTPException:
    return ProblemError(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many failed sign-ins: try again in {wait} seconds",
        code="too_many_sign_ins",
        headers={"Retry-After": str(wait)},
    )


async def _throttled(
    session: AsyncSession, settings: Settings, keys: tuple[str, str]
) -> int | None:
    by_user, by_address = settings.login_throttles
    now, failures = await users.recent_failures(session, keys, by_user.window)
    return login_retry_after([(by_user, failures[keys[0]]), (by_address, failures[keys[1]])], now)


async def start_user_session(
    request: Request, response: Response, session: AsyncSession, user: users.User
) -> SessionOut:
    """A new session for ``user`` (in the caller's transaction), its cookie on ``response``."""
    settings = runtime_of(request).settings
    old = _session_credential(request)
    if old is not None:  # never keep a session id chosen before signing in (fixation)
        await sessions.end_session(session, old.secret)
        runtime_of(request).authenticator.forget(old.key)
    session_id, row = await sessions.start_session(session, user, settings.session_policy)
    _set_cookie(response, request, session_id, int(settings.session_policy.max_age.total_seconds()))
    principal = await sessions.principal_for(session, user)
    return _session_out(principal, sessions.SignedIn(user, row), session_id, settings)


def auth_router() -> APIRouter:
    router = APIRouter(prefix="/v1/auth", tags=["auth"])

    @router.post(
        "/login",
        response_model=SessionOut,
        summary="Sign in with username and password: sets the session cookie",
        responses=_AUTH_ERRORS,
    )
    async def login(body: LoginIn, request: Request, response: Response) -> SessionOut:
        password = _given_password("password", body.password)
        settings = runtime_of(request).settings
        address = request.client.host if request.client else "unknown"
        keys = users.throttle_keys(body.username, address)
        gate = password_gate(request)
        async with session_scope(db(request)) as session:
            wait = await _throttled(session, settings, keys)
            if wait is not None:
                raise _too_many(wait)
            found = await users.get_user(session, body.username)
            stored = found.password_hash if found and found.disabled_at is None else None
        if not await gate.verify(stored, password):
            async with session_scope(db(request)) as session:
                await users.record_failure(session, keys, settings.login_throttles[0].window)
            logger.info("sign-in refused for a username from %s", address)
            raise HTTPException(401, BAD_LOGIN)
        async with session_scope(db(request)) as session:
            # Read again, locked: disabled or given a new password while the hash was checked.
            user = await users.get_user(session, body.username, lock=True)
            if (
                user is None
                or user.disabled_at is not None
                or user.password_hash is None
                or user.password_hash != stored
            ):
                raise HTTPException(401, BAD_LOGIN)
            await users.clear_failures(session, keys[0])
            if gate.passwords.needs_rehash(user.password_hash):
                await users.rehash_password(session, user, await gate.hash(password))
            await users.touch_login(session, user)
            answer = await start_user_session(request, response, session, user)
        logger.info("user %s signed in", user.username)
        return answer

    @router.post(
        "/logout",
        status_code=204,
        summary="Sign out: ends the session (a bearer token is left as it is)",
        response_class=Response,
        responses={204: {"description": "Signed out; the cookie is cleared."}},
    )
    async def logout(request: Request, principal: AnyCaller) -> Response:
        response = Response(status_code=204)
        credential = _session_credential(request)
        if credential is not None:
            async with session_scope(db(request)) as session:
                await sessions.end_session(session, credential.secret)
            runtime_of(request).authenticator.forget(credential.key)
            _clear_cookie(response, request)
        return response

    @router.get(
        "/session",
        response_model=SessionOut,
        summary="Who is signed in, and the session's CSRF token",
    )
    async def current_session(request: Request, principal: AnyCaller) -> SessionOut:
        credential = _session_credential(request)
        settings = runtime_of(request).settings
        signed = None
        if credential is not None:
            async with session_scope(db(request)) as session:
                signed = await sessions.signed_in(
                    session, credential.secret, settings.session_policy
                )
            if signed is None:  # ended since the guard's cached verdict
                raise HTTPException(401, "session expired or signed out: sign in again")
        return _session_out(principal, signed, credential.secret if credential else None, settings)

    @router.post(
        "/password",
        response_model=SessionOut,
        summary="Change one's own password (ends every other session of the user)",
        responses={
            403: {"description": "Not a signed-in user (a bearer token has no password)."},
            **_AUTH_ERRORS,
        },
    )
    async def change_password(
        body: PasswordChangeIn,
        request: Request,
        response: Response,
        principal: AnyCaller,
    ) -> SessionOut:
        current = _given_password("current_password", body.current_password)
        new = checked_password("new_password", body.new_password)
        credential = _session_credential(request)
        if credential is None:
            raise HTTPException(403, "only a signed-in user has a password to change")
        settings = runtime_of(request).settings
        gate = password_gate(request)
        async with session_scope(db(request)) as session:
            signed = await sessions.signed_in(session, credential.secret, settings.session_policy)
            if signed is None:
                raise HTTPException(401, "session expired or signed out: sign in again")
            if signed.user.password_hash is None:
                raise HTTPException(403, SSO_NO_PASSWORD)
            address = request.client.host if request.client else "unknown"
            keys = users.throttle_keys(signed.user.username, address)
            wait = await _throttled(session, settings, keys)
            if wait is not None:
                raise _too_many(wait)
        if not await gate.verify(signed.user.password_hash, current):
            async with session_scope(db(request)) as session:
                await users.record_failure(session, keys, settings.login_throttles[0].window)
            raise bad_param("body", "current_password", "is not the account's password")
        new_hash = await gate.hash(new)
        async with session_scope(db(request)) as session:
            user = await users.get_user(session, signed.user.username, lock=True)
            if user is None or user.disabled_at is not None:
                raise HTTPException(401, "session expired or signed out: sign in again")
            await users.set_password(session, user, new_hash)
            answer = await start_user_session(request, response, session, user)
        runtime_of(request).authenticator.forget(credential.key)
        logger.info("user %s changed their password", user.username)
        return answer

    return router
