"""ID-token verification and the provider's metadata (services.scoring.sso.tokens): tokens
signed here with real keys, each check of OpenID Connect Core 3.1.3.7 made to fail once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from services.scoring.sso.domain import SsoRefused
from services.scoring.sso.tokens import (
    CLOCK_LEEWAY_SECONDS,
    ProviderMetadata,
    UnknownSigningKey,
    parse_key_set,
    verify_id_token,
)

ISSUER = "https://id.example.com"
NOW = 1_800_000_000
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, other key
PUBLISHED = parse_key_set({"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]})
METADATA = ProviderMetadata(
    issuer=ISSUER,
    authorization_endpoint=ISSUER + "/authorize",
    token_endpoint=ISSUER + "/token",
    jwks_uri=ISSUER + "/jwks",
    algorithms=("RS256", "ES256"),
)


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "sub": "s-1",
        "aud": "kpi",
        "exp": NOW + 300,
        "iat": NOW - 5,
        "nonce": "n-1",
        "groups": ["leads"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], key: Any = RSA, alg: str = "RS256", **header: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key)


def _verify(token: str, now: int = NOW, keys: KeySet = PUBLISHED) -> dict[str, Any]:
    return verify_id_token(token, keys, metadata=METADATA, client_id="kpi", nonce="n-1", now=now)


def _refused(token: str, now: int = NOW, keys: KeySet = PUBLISHED) -> str:
    with pytest.raises(SsoRefused) as caught:
        _verify(token, now, keys)
    assert caught.value.code == "token"
    return caught.value.reason


def test_a_token_signed_by_a_published_key_for_this_login_is_accepted() -> None:
    assert _verify(_sign(_claims()))["groups"] == ["leads"]
    assert _verify(_sign(_claims(), EC, "ES256"))["sub"] == "s-1"
    # Several audiences: this client is one of them and the authorised party.
    assert _verify(_sign(_claims(aud=["kpi", "other"], azp="kpi")))["azp"] == "kpi"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"iss": "https://evil.example.com"}, "'iss'"),
        ({"aud": "another-client"}, "'aud'"),
        ({"aud": ["other", "third"]}, "'aud'"),
        ({"aud": ["kpi", "other"]}, "azp"),  # several audiences need azp
        ({"azp": "other"}, "azp"),
        ({"nonce": "n-2"}, "'nonce'"),
        ({"nonce": None}, "nonce"),
        ({"sub": None}, "sub"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
        ({"sub": 7}, "'sub'"),
    ],
)
def test_each_claim_check_refuses(changes: dict[str, Any], named: str) -> None:
    assert named in _refused(_sign(_claims(**changes)))


@given(st.integers(-3 * CLOCK_LEEWAY_SECONDS, 3 * CLOCK_LEEWAY_SECONDS))
def test_expiry_and_issue_time_allow_the_clock_leeway_only(offset: int) -> None:
    expired = _sign(_claims(exp=NOW + offset))
    if NOW + offset > NOW - CLOCK_LEEWAY_SECONDS:
        assert _verify(expired)
    else:
        assert "expired" in _refused(expired)
    issued = _sign(_claims(iat=NOW + offset))
    if NOW + offset <= NOW + CLOCK_LEEWAY_SECONDS:
        assert _verify(issued)
    else:
        assert "'iat'" in _refused(issued)


def test_a_forged_or_altered_token_is_refused() -> None:
    assert "signature" in _refused(_sign(_claims(), STRANGER))
    header, payload, signature = _sign(_claims()).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["groups"] = ["kpi-admins"]
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert "signature" in _refused(f"{header}.{body}.{signature}")
    assert _refused("not.a.token") and _refused("") and _refused("a.b")


def test_unsigned_and_symmetric_tokens_are_refused() -> None:
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"rsa-1"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    assert _refused(f"{none_header.decode()}.{payload.decode()}.")
    # HS256 keyed with what the provider publishes (its public key) is the classic forgery.
    header = _b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    signed = f"{header}.{payload.decode()}"
    mac = hmac.new(RSA.as_pem(private=False), signed.encode(), hashlib.sha256).digest()
    assert _refused(f"{signed}.{_b64(mac)}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_of_an_unknown_key_asks_for_the_keys_again() -> None:
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
    with pytest.raises(UnknownSigningKey):
        _verify(_sign(_claims(), rotated))
    keys = parse_key_set({"keys": [RSA.as_dict(private=False), rotated.as_dict(private=False)]})
    assert _verify(_sign(_claims(), rotated), keys=keys)


def test_key_sets_without_a_usable_key_are_refused() -> None:
    for document in ({}, {"keys": []}, {"keys": "x"}, [], {"keys": [{"kty": "nope"}]}):
        with pytest.raises(SsoRefused) as caught:
            parse_key_set(document)
        assert caught.value.code == "provider"
    encryption_only = {"keys": [{**RSA.as_dict(private=False), "use": "enc"}]}
    with pytest.raises(SsoRefused):
        parse_key_set(encryption_only)


# --- discovery -------------------------------------------------------------------------------

DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": ISSUER + "/authorize?tenant=a",
    "token_endpoint": ISSUER + "/token",
    "jwks_uri": ISSUER + "/jwks",
    "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
}


def test_discovery_document_parses() -> None:
    metadata = ProviderMetadata.parse(DOCUMENT, ISSUER + "/")
    assert metadata.algorithms == ("RS256",)  # never HS256 or none
    assert metadata.authorization_endpoint.endswith("?tenant=a")
    assert metadata.client_auth == "client_secret_basic"
    no_algs = {k: v for k, v in DOCUMENT.items() if not k.startswith("id_token")}
    assert ProviderMetadata.parse(no_algs, ISSUER).algorithms == ("RS256",)
    post = {**DOCUMENT, "token_endpoint_auth_methods_supported": ["client_secret_post"]}
    assert ProviderMetadata.parse(post, ISSUER).client_auth == "client_secret_post"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"issuer": "https://other.example.com"}, "issuer"),
        ({"issuer": None}, "issuer"),
        ({"token_endpoint": None}, "token_endpoint is missing"),
        ({"jwks_uri": "http://id.example.com/jwks"}, "jwks_uri must be https"),
        ({"token_endpoint": "/token"}, "token_endpoint must be an absolute"),
        ({"id_token_signing_alg_values_supported": ["HS256"]}, "none of"),
    ],
)
def test_bad_discovery_documents_are_refused(changes: dict[str, Any], named: str) -> None:
    document = {k: v for k, v in {**DOCUMENT, **changes}.items() if v is not None}
    with pytest.raises(SsoRefused) as caught:
        ProviderMetadata.parse(document, ISSUER)
    assert caught.value.code == "provider" and named in caught.value.reason
    with pytest.raises(SsoRefused):
        ProviderMetadata.parse(["not", "an", "object"], ISSUER)
