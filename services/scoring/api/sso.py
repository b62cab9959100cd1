"""Single sign-on by OpenID Connect: the sign-in options, the redirect to the provider and its
callback, which signs the user in with the same session as a password would."""

from __future__ import annotations

import logging
import secrets
from typing import Final
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.api.account_schemas import SignInMethods
from services.scoring.api.auth_routes import db, runtime_of, start_user_session
from services.scoring.api.dashboard import UI_PREFIX
from services.scoring.sso import store
from services.scoring.sso.domain import (
    CALLBACK_PATH,
    LOGIN_PATH,
    LOGIN_TTL,
    LoginStart,
    SsoIdentity,
    SsoRefused,
    authorization_url,
    callback_code,
    identity_of,
)
from services.scoring.sso.provider import OidcProvider
from shared import users
from shared.accounts import cookie_is_secure
from shared.db import session_scope

logger = logging.getLogger(__name__)

# The browser's key to its sign-in under way: sent back only to the callback.
LOGIN_COOKIE: Final = "kpi_oidc"
LOGIN_COOKIE_PATH: Final = "/v1/auth/oidc"
ERROR_PARAM: Final = "sso_error"
NOT_ENABLED = "single sign-on is not enabled (KPI_OIDC_ISSUER is not set)"


def provider_of(request: Request) -> OidcProvider:
    provider: OidcProvider | None = getattr(request.app.state, "oidc", None)
    if provider is None:
        raise HTTPException(404, NOT_ENABLED)
    return provider


def dashboard_url(provider: OidcProvider) -> str:
    """The dashboard's page: below the callback URL's base when that is this service's own
    path (behind a proxy that adds a prefix too), else on this origin."""
    redirect = provider.config.redirect_url
    base = redirect.removesuffix(CALLBACK_PATH) if redirect.endswith(CALLBACK_PATH) else ""
    return base + UI_PREFIX + "/"


def _login_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    settings = runtime_of(request).settings
    response.set_cookie(
        LOGIN_COOKIE,
        value,
        max_age=max_age,
        path=LOGIN_COOKIE_PATH,
        httponly=True,
        # Lax: sent on the provider's top-level redirect back to the callback, never on a
        # request another site makes in the background.
        samesite="lax",
        secure=cookie_is_secure(
            settings.session_cookie_secure, request.url.scheme, settings.public_url
        ),
    )


def _refused(request: Request, provider: OidcProvider, exc: SsoRefused) -> Response:
    logger.warning("single sign-on refused (%s): %s", exc.code, exc.reason)
    target = dashboard_url(provider) + "?" + urlencode({ERROR_PARAM: exc.code})
    response = RedirectResponse(target, status_code=303)
    _login_cookie(request, response, "", 0)
    return response


async def _account_of(session: AsyncSession, identity: SsoIdentity) -> users.User:
    """The provider subject's account, made on its first sign-in and brought in line with its
    claims on each one after; SsoRefused when it is disabled or its username is taken."""
    user = await users.get_sso_user(session, identity.issuer, identity.subject)
    if user is None:
        try:
            return await users.create_user(
                session,
                identity.username,
                identity.account,
                None,
                identity.display_name,
                sso=(identity.issuer, identity.subject),
            )
        except users.UsernameTaken:
            # Never joined to an account with a password, or to another subject's.
            user = await users.get_sso_user(session, identity.issuer, identity.subject)
            if user is None:
                raise SsoRefused(
                    "taken", f"the username {identity.username!r} belongs to another account"
                ) from None
    if user.disabled_at is not None:
        raise SsoRefused("disabled", f"the account {user.username!r} is disabled")
    name = identity.display_name
    if user.account != identity.account or (name is not None and name != user.display_name):
        await users.update_user(session, user, account=identity.account, display_name=name)
    return user


def sso_router() -> APIRouter:
    router = APIRouter(prefix="/v1/auth", tags=["auth"])

    @router.get(
        "/methods",
        response_model=SignInMethods,
        summary="How one may sign in: password, and SSO when configured (no credentials)",
    )
    async def methods(request: Request) -> SignInMethods:
        enabled = getattr(request.app.state, "oidc", None) is not None
        return SignInMethods(
            password=True, sso=enabled, sso_login_url=LOGIN_PATH if enabled else None
        )

    # The two steps a browser is sent through answer only redirects (302 onwards, 303 to the
    # sign-in page with ?sso_error=<code>), like the dashboard's "/": pages, not API, so they
    # are left out of the OpenAPI document (docs/security.md describes them).
    @router.get("/oidc/login", include_in_schema=False)
    async def oidc_login(request: Request) -> Response:
        """Start single sign-on: redirect to the provider (authorization code with PKCE)."""
        provider = provider_of(request)
        try:
            metadata = await provider.metadata()
        except SsoRefused as exc:
            return _refused(request, provider, exc)
        login = LoginStart.new()
        browser_key = secrets.token_urlsafe(32)
        async with session_scope(db(request)) as session:
            await store.save_login(session, browser_key, login, LOGIN_TTL)
        target = authorization_url(metadata.authorization_endpoint, provider.config, login)
        response = RedirectResponse(target, status_code=302)
        _login_cookie(request, response, browser_key, int(LOGIN_TTL.total_seconds()))
        return response

    @router.get("/oidc/callback", include_in_schema=False)
    async def oidc_callback(request: Request) -> Response:
        """The provider's redirect back: verify it, sign in, redirect to the dashboard."""
        provider = provider_of(request)
        browser_key = request.cookies.get(LOGIN_COOKIE)
        try:
            login = None
            if browser_key:
                async with session_scope(db(request)) as session:
                    login = await store.take_login(session, browser_key)
            if login is None:
                raise SsoRefused(
                    "state",
                    "no sign-in under way in this browser (no or an unknown, used or expired "
                    f"{LOGIN_COOKIE} cookie)",
                )
            code = callback_code(dict(request.query_params), login.state)
            id_token = await provider.exchange(code, login.verifier)
            claims = await provider.verify(id_token, login.nonce)
            identity = identity_of(claims, provider.config.issuer, provider.config.mapping)
            response = RedirectResponse(dashboard_url(provider), status_code=302)
            async with session_scope(db(request)) as session:
                user = await _account_of(session, identity)
                await users.touch_login(session, user)
                await start_user_session(request, response, session, user)
        except SsoRefused as exc:
            return _refused(request, provider, exc)
        _login_cookie(request, response, "", 0)
        logger.info("user %s signed in by single sign-on (%s)", user.username, user.role)
        return response

    return router
