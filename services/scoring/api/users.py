"""Admin routes of user accounts and API tokens (the CLI's `kpi user` and `kpi token`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response

from services.scoring.api.account_schemas import (
    PasswordResetIn,
    TokenCreated,
    TokenIn,
    TokenList,
    TokenOut,
    UserIn,
    UserList,
    Username,
    UserOut,
    UserUpdate,
)
from services.scoring.api.auth_routes import (
    checked_password,
    db,
    password_gate,
    user_out,
)
from services.scoring.api.deps import Admin
from services.scoring.api.errors import ERRORS, bad_param, not_found
from shared import auth, users
from shared.accounts import (
    SSO_NO_PASSWORD,
    Account,
    AccountError,
    check_account,
    check_token_request,
    display_name_problem,
    parse_lifetime,
)
from shared.db import session_scope, utcnow
from shared.passwords import Passwords
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

UsernameParam = Annotated[Username, Path(description="The account's login (any case).")]


def _account(exc: AccountError) -> HTTPException:
    return bad_param("body", exc.field, exc.reason)


def _checked(account: Account) -> Account:
    try:
        return check_account(account)
    except AccountError as exc:
        raise _account(exc) from None


def _display_name(value: str | None) -> str | None:
    if value is not None:
        problem = display_name_problem(value)
        if problem is not None:
            raise bad_param("body", "display_name", problem)
    return value


def _taken(username: str) -> HTTPException:
    return HTTPException(
        409,
        detail=[
            {
                "loc": ["body", "username"],
                "msg": f"an account with the login {username!r} exists (logins ignore case)",
                "type": "conflict",
            }
        ],
    )


def token_out(row: auth.ApiToken) -> TokenOut:
    return TokenOut(
        id=row.id,
        role=row.role,
        subject=row.subject,
        team_ids=sorted(row.team_ids or ()),
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


BOOTSTRAP_ADMIN = "admin"


async def bootstrap_admin(runtime: Runtime) -> None:
    """With KPI_BOOTSTRAP_ADMIN_PASSWORD set and no user yet, create the user 'admin' with it
    (several replicas may start at once: one creates it, the others find it taken)."""
    secret = runtime.settings.bootstrap_admin_password
    if secret is None:
        return
    async with session_scope(runtime.sessionmaker) as session:
        if await users.any_user(session):
            return
    password_hash = await asyncio.to_thread(
        Passwords(runtime.settings.password_params).hash, secret.get_secret_value()
    )
    try:
        async with session_scope(runtime.sessionmaker) as session:
            if not await users.any_user(session):
                await users.create_user(
                    session, BOOTSTRAP_ADMIN, Account("admin"), password_hash, "Administrator"
                )
                logger.info("created the bootstrap admin user %r", BOOTSTRAP_ADMIN)
    except users.UsernameTaken:
        pass


def users_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["auth"], responses=ERRORS)

    @router.get("/users", response_model=UserList, summary="Every user account (admin)")
    async def get_users(request: Request, principal: Admin) -> UserList:
        async with session_scope(db(request)) as session:
            return UserList(users=[user_out(u) for u in await users.list_users(session)])

    @router.post(
        "/users",
        response_model=UserOut,
        status_code=201,
        summary="Create a user account (admin)",
        responses={409: {"description": "The login exists (logins ignore case)."}},
    )
    async def create_user(body: UserIn, request: Request, principal: Admin) -> UserOut:
        password = checked_password("password", body.password)
        account = _checked(Account(body.role, tuple(body.team_ids), body.specialist_id))
        display_name = _display_name(body.display_name)
        password_hash = await password_gate(request).hash(password)
        try:
            async with session_scope(db(request)) as session:
                user = await users.create_user(
                    session, body.username, account, password_hash, display_name
                )
        except users.UsernameTaken:
            raise _taken(body.username) from None
        logger.info("user %s created by %s", user.username, principal.subject)
        return user_out(user)

    @router.put(
        "/users/{username}",
        response_model=UserOut,
        summary="Change a user's role, teams, specialist, display name; disable or enable (admin)",
    )
    async def update_user(
        body: UserUpdate,
        request: Request,
        principal: Admin,
        username: UsernameParam,
    ) -> UserOut:
        display_name = _display_name(body.display_name)
        async with session_scope(db(request)) as session:
            user = await users.get_user(session, username, lock=True)
            if user is None:
                raise not_found("user", username)
            role = body.role or user.role
            same_role = role == user.role
            teams = body.team_ids if body.team_ids is not None else (
                user.team_ids if same_role else []
            )  # fmt: skip
            specialist = body.specialist_id or (user.specialist_id if same_role else None)
            account = _checked(Account(role, tuple(teams or ()), specialist))
            if user.username == principal.subject and user.role == "admin":
                # An admin cannot lock themselves out by accident.
                if body.disabled:
                    raise bad_param("body", "disabled", "you cannot disable your own account")
                if account.role != "admin":
                    raise bad_param("body", "role", "you cannot take the admin role from yourself")
            await users.update_user(
                session, user, account=account, display_name=display_name, disabled=body.disabled
            )
            out = user_out(user)
        logger.info("user %s changed by %s", out.username, principal.subject)
        return out

    @router.post(
        "/users/{username}/password",
        status_code=204,
        response_class=Response,
        summary="Set a user's password (admin); ends the user's sessions",
        responses={204: {"description": "Password set; the user's sessions are ended."}},
    )
    async def reset_password(
        body: PasswordResetIn,
        request: Request,
        principal: Admin,
        username: UsernameParam,
    ) -> Response:
        password = checked_password("password", body.password)
        async with session_scope(db(request)) as session:
            found = await users.get_user(session, username)
            if found is None:
                raise not_found("user", username)
            if found.is_sso:
                raise bad_param("body", "password", SSO_NO_PASSWORD)
        password_hash = await password_gate(request).hash(password)
        async with session_scope(db(request)) as session:
            user = await users.get_user(session, username, lock=True)
            if user is None:
                raise not_found("user", username)
            try:
                await users.set_password(session, user, password_hash)
            except AccountError as exc:  # became an SSO account while the hash was computed
                raise _account(exc) from None
        logger.info("password of user %s reset by %s", user.username, principal.subject)
        return Response(status_code=204)

    @router.get("/tokens", response_model=TokenList, summary="Every API token, no secrets (admin)")
    async def get_tokens(request: Request, principal: Admin) -> TokenList:
        async with session_scope(db(request)) as session:
            return TokenList(tokens=[token_out(t) for t in await auth.list_tokens(session)])

    @router.post(
        "/tokens",
        response_model=TokenCreated,
        status_code=201,
        summary="Create an API token (admin); its clear text is in this answer only",
    )
    async def create_token(body: TokenIn, request: Request, principal: Admin) -> TokenCreated:
        try:
            subject, teams = check_token_request(body.role, body.subject, body.team_ids)
        except AccountError as exc:
            raise _account(exc) from None
        expires_at: dt.datetime | None = None
        if body.expires_in is not None:
            try:
                expires_at = utcnow() + parse_lifetime(body.expires_in)
            except ValueError as exc:
                raise bad_param("body", "expires_in", str(exc)) from None
        async with session_scope(db(request)) as session:
            clear, row = await auth.issue_token(
                session, auth.Role(body.role), subject, teams, body.description, expires_at
            )
            await session.refresh(row)
        logger.info("token %s (%s) created by %s", row.id, row.role, principal.subject)
        return TokenCreated(**token_out(row).model_dump(), token=clear)

    @router.delete(
        "/tokens/{token_id}",
        status_code=204,
        response_class=Response,
        summary="Revoke an API token (admin); refused everywhere within KPI_AUTH_CACHE_SECONDS",
        responses={204: {"description": "Revoked (or it already was)."}},
    )
    async def delete_token(token_id: uuid.UUID, request: Request, principal: Admin) -> Response:
        async with session_scope(db(request)) as session:
            row = await auth.revoke_token(session, token_id)
        if row is None:
            raise not_found("token", str(token_id))
        request.app.state.authenticator.forget(row.token_hash)
        logger.info("token %s revoked by %s", token_id, principal.subject)
        return Response(status_code=204)

    return router
