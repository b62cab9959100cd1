"""The OpenID Connect provider over HTTP: discovery and keys (cached), the code exchange."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote_plus

import httpx
from joserfc.jwk import KeySet

from services.scoring.sso.domain import OidcConfig, SsoRefused
from services.scoring.sso.tokens import (
    ProviderMetadata,
    UnknownSigningKey,
    parse_key_set,
    verify_id_token,
)

logger = logging.getLogger(__name__)

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
# The provider's metadata and keys are asked again after this long (keys also when a token
# names one not yet seen, at most once per KEYS_REFRESH_MIN_SECONDS).
METADATA_TTL_SECONDS: Final = 3600.0
KEYS_REFRESH_MIN_SECONDS: Final = 30.0
HTTP_TIMEOUT_SECONDS: Final = 10.0
# Discovery, JWKS and token answers are small; a larger one is refused unread.
MAX_ANSWER_BYTES: Final = 1024 * 1024


class OidcProvider:
    """One configured provider: what the login and callback routes ask of it."""

    def __init__(
        self,
        config: OidcConfig,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._http = http or httpx.AsyncClient(
            timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
        )
        self._clock = clock
        self._lock = asyncio.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, KeySet] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, cached; SsoRefused("provider") when it cannot be had."""
        cached = self._metadata
        if cached is not None and self._clock() - cached[0] < METADATA_TTL_SECONDS:
            return cached[1]
        async with self._lock:
            cached = self._metadata
            if cached is None or self._clock() - cached[0] >= METADATA_TTL_SECONDS:
                url = self.config.issuer + DISCOVERY_PATH
                document = await self._json("GET", url, "discovery")
                cached = (self._clock(), ProviderMetadata.parse(document, self.config.issuer))
                self._metadata = cached
        return cached[1]

    async def _key_set(self, metadata: ProviderMetadata, *, fresh: bool) -> KeySet:
        async with self._lock:
            cached = self._keys
            age = None if cached is None else self._clock() - cached[0]
            stale = age is None or age >= METADATA_TTL_SECONDS
            if stale or (fresh and age is not None and age >= KEYS_REFRESH_MIN_SECONDS):
                document = await self._json("GET", metadata.jwks_uri, "JWKS")
                cached = (self._clock(), parse_key_set(document))
                self._keys = cached
            assert cached is not None
            return cached[1]

    async def exchange(self, code: str, verifier: str) -> str:
        """The ID token the token endpoint gives for ``code`` and the login's PKCE verifier."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_url,
            "code_verifier": verifier,
            "client_id": self.config.client_id,
        }
        auth: httpx.Auth | None = None
        secret = self.config.client_secret
        if secret is not None and metadata.client_auth == "client_secret_post":
            form["client_secret"] = secret
        elif secret is not None:
            # RFC 6749 2.3.1: id and secret are form-encoded before Basic encodes them.
            auth = httpx.BasicAuth(quote_plus(self.config.client_id), quote_plus(secret))
        answer = await self._json("POST", metadata.token_endpoint, "token", data=form, auth=auth)
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise SsoRefused("provider", "the token endpoint's answer has no id_token")
        return id_token

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of ``id_token`` once verified (a key unknown so far: keys asked again)."""
        metadata = await self.metadata()
        for fresh in (False, True):
            keys = await self._key_set(metadata, fresh=fresh)
            try:
                return verify_id_token(
                    id_token,
                    keys,
                    metadata=metadata,
                    client_id=self.config.client_id,
                    nonce=nonce,
                    now=int(self._clock()),
                )
            except UnknownSigningKey:
                if fresh:
                    raise
        raise AssertionError("unreachable")

    async def _json(
        self,
        method: str,
        url: str,
        what: str,
        data: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> Any:
        """The JSON answer of one call; SsoRefused("provider") naming ``what`` went wrong."""
        try:
            request = self._http.build_request(
                method, url, headers={"Accept": "application/json"}, data=data
            )
            response = await self._http.send(request, auth=auth, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise SsoRefused("provider", f"the {what} answer is over 1 MiB")
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise SsoRefused("provider", f"{what} request failed: {exc!r}"[:500]) from None
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if response.status_code != 200:
            error = document.get("error") if isinstance(document, dict) else None
            raise SsoRefused(
                "provider", f"the {what} endpoint answered {response.status_code} {error!r}"[:500]
            )
        if document is None:
            raise SsoRefused("provider", f"the {what} answer is not JSON")
        return document
