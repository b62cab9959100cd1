"""The provider's metadata and keys, and ID-token verification (joserfc; no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from services.scoring.sso.domain import SIGNING_ALGORITHMS, SsoRefused, url_problem

# Clocks of the provider and of this host may differ by this much (exp, iat, nbf).
CLOCK_LEEWAY_SECONDS: Final = 60


class UnknownSigningKey(SsoRefused):
    """The token names a key the cached key set lacks: the provider may have rotated keys."""

    def __init__(self, reason: str) -> None:
        super().__init__("token", reason)


@dataclass(frozen=True)
class ProviderMetadata:
    """What sign-in needs of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    # "client_secret_basic" unless the provider supports only "client_secret_post".
    client_auth: str = "client_secret_basic"

    @classmethod
    def parse(cls, document: object, issuer: str) -> ProviderMetadata:
        """The metadata of a discovery document for ``issuer``; SsoRefused("provider") naming
        the field that is missing, not a URL, or another issuer's."""
        if not isinstance(document, Mapping):
            raise SsoRefused("provider", "the discovery document is not a JSON object")
        found = document.get("issuer")
        if not isinstance(found, str) or found.rstrip("/") != issuer.rstrip("/"):
            # OpenID Connect Discovery 4.3: the document must be the configured issuer's.
            raise SsoRefused(
                "provider", f"the discovery document names the issuer {str(found)[:200]!r}"
            )
        urls: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str):
                raise SsoRefused("provider", f"the discovery document's {name} is missing")
            problem = url_problem(value, https_only=True)
            # A provider may put its own parameters on the authorization endpoint.
            if problem == "must not have a query or fragment" and name != "jwks_uri":
                problem = None
            if problem is not None:
                raise SsoRefused("provider", f"the discovery document's {name} {problem}")
            urls[name] = value
        offered = document.get("id_token_signing_alg_values_supported")
        algorithms = tuple(
            a
            for a in (offered if isinstance(offered, list) else ["RS256"])
            if a in SIGNING_ALGORITHMS
        )
        if not algorithms:
            raise SsoRefused(
                "provider", f"the provider signs ID tokens with none of {SIGNING_ALGORITHMS}"
            )
        methods = document.get("token_endpoint_auth_methods_supported")
        post_only = (
            isinstance(methods, list)
            and "client_secret_post" in methods
            and "client_secret_basic" not in methods
        )
        return cls(
            issuer=found,
            authorization_endpoint=urls["authorization_endpoint"],
            token_endpoint=urls["token_endpoint"],
            jwks_uri=urls["jwks_uri"],
            algorithms=algorithms,
            client_auth="client_secret_post" if post_only else "client_secret_basic",
        )


def parse_key_set(document: object) -> KeySet:
    """The provider's signing keys (JWKS); SsoRefused("provider") when there are none."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise SsoRefused("provider", "the JWKS document has no 'keys' list")
    keys = [k for k in document["keys"] if isinstance(k, Mapping) and k.get("use") != "enc"]
    try:
        return KeySet.import_key_set({"keys": keys})  # type: ignore[typeddict-item]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoRefused("provider", f"the JWKS document holds no usable key ({exc})") from None


def verify_id_token(
    id_token: str,
    keys: KeySet,
    *,
    metadata: ProviderMetadata,
    client_id: str,
    nonce: str,
    now: int,
) -> dict[str, Any]:
    """The claims of an ID token signed by one of ``keys`` for this client and this login
    (OpenID Connect Core 3.1.3.7): signature, iss, aud (and azp), exp, iat, nbf, nonce.
    SsoRefused("token") naming what failed; UnknownSigningKey when no key has its kid."""
    try:
        token = jwt.decode(id_token, keys, algorithms=list(metadata.algorithms))
    except InvalidKeyIdError as exc:
        raise UnknownSigningKey(f"no key of the provider's JWKS signs it ({exc})") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise SsoRefused(
            "token", f"the ID token's signature or form is invalid ({exc!r})"
        ) from None
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=CLOCK_LEEWAY_SECONDS,
        iss={"essential": True, "value": metadata.issuer},
        sub={"essential": True},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    claims = token.claims
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise SsoRefused("token", "the ID token has expired") from None
    except MissingClaimError as exc:
        raise SsoRefused("token", f"the ID token lacks the claim(s) {exc.claim!r}") from None
    except InvalidClaimError as exc:
        raise SsoRefused("token", f"the ID token's claim {exc.claim!r} is wrong ({exc})") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (azp is not None or len(audiences) > 1) and azp != client_id:
        raise SsoRefused("token", "the ID token's azp is not this client")
    return claims
