"""Pure rules of OpenID Connect sign-in: configuration, PKCE, the login's state, claims to roles."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared.accounts import (
    USER_ROLES,
    Account,
    AccountError,
    check_account,
    display_name_problem,
    username_problem,
)
from shared.oidc_settings import OidcSettings
from shared.settings import SettingsError

CALLBACK_PATH: Final = "/v1/auth/oidc/callback"
LOGIN_PATH: Final = "/v1/auth/oidc/login"
# How long a started sign-in may take at the provider before its callback is refused.
LOGIN_TTL: Final = dt.timedelta(minutes=10)
# Several roles matched: the one that may do most wins (a lead who is also an agent).
ROLE_PRECEDENCE: Final = ("admin", "supervisor", "specialist")
# Signatures an ID token may carry: asymmetric only, so a key the provider publishes can never
# be used to forge one ("none" and HMAC with a shared secret are refused).
SIGNING_ALGORITHMS: Final = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
# OpenID Connect Core 2: "sub" is at most 255 ASCII characters.
SUBJECT_MAX: Final = 255
# What a claim naming several values may hold before it is cut (a user in 10,000 groups).
CLAIM_VALUES_MAX: Final = 1000

Refusal = Literal["state", "denied", "provider", "token", "unmapped", "claims", "taken", "disabled"]
# Why a sign-in was refused, as the dashboard's sign-in page names it (/?sso_error=<code>).
REFUSALS: Final[tuple[Refusal, ...]] = (
    "state", "denied", "provider", "token", "unmapped", "claims", "taken", "disabled",
)  # fmt: skip


class SsoRefused(Exception):
    """A sign-in that cannot go on: the code the user is shown and the reason that is logged."""

    def __init__(self, code: Refusal, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimMapping:
    """Which claims name the user, their role, a supervisor's teams and a specialist's id."""

    role_map: Mapping[str, str]
    username_claim: str = "preferred_username"
    role_claim: str = "groups"
    team_claim: str | None = None
    specialist_claim: str | None = None


@dataclass(frozen=True)
class OidcConfig:
    """A checked OpenID Connect client configuration."""

    issuer: str
    client_id: str
    scopes: tuple[str, ...]
    redirect_url: str
    mapping: ClaimMapping
    client_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: OidcSettings, public_url: str = "") -> OidcConfig | None:
        """None when KPI_OIDC_ISSUER is unset; SettingsError naming every bad variable."""
        issuer = settings.oidc_issuer.strip()
        if not issuer:
            return None
        problems: list[str] = []

        def check(name: str, problem: str | None) -> None:
            if problem is not None:
                problems.append(f"KPI_OIDC_{name}: {problem}")

        check("ISSUER", url_problem(issuer))
        client_id = settings.oidc_client_id.strip()
        check("CLIENT_ID", None if client_id else "must be set when KPI_OIDC_ISSUER is")
        scopes = tuple(dict.fromkeys(settings.oidc_scopes.split()))
        check("SCOPES", None if "openid" in scopes else "must include openid")
        redirect = settings.oidc_redirect_url.strip()
        if not redirect and public_url.strip():
            redirect = public_url.strip().rstrip("/") + CALLBACK_PATH
        if redirect:
            check("REDIRECT_URL", url_problem(redirect, https_only=False))
        else:
            check("REDIRECT_URL", "must be set (or KPI_PUBLIC_URL, from which it is derived)")
        check("ROLE_MAP", role_map_problem(settings.oidc_role_map))
        for name, claim in (
            ("USERNAME_CLAIM", settings.oidc_username_claim),
            ("ROLE_CLAIM", settings.oidc_role_claim),
        ):
            check(name, None if claim.strip() else "must not be empty")
        if problems:
            raise SettingsError("Invalid configuration:\n  " + "\n  ".join(problems))
        secret = settings.oidc_client_secret
        return cls(
            issuer=issuer.rstrip("/"),
            client_id=client_id,
            scopes=scopes,
            redirect_url=redirect,
            mapping=ClaimMapping(
                role_map=dict(settings.oidc_role_map),
                username_claim=settings.oidc_username_claim.strip(),
                role_claim=settings.oidc_role_claim.strip(),
                team_claim=settings.oidc_team_claim.strip() or None,
                specialist_claim=settings.oidc_specialist_claim.strip() or None,
            ),
            client_secret=secret.get_secret_value() if secret is not None else None,
        )


def url_problem(url: str, *, https_only: bool = True) -> str | None:
    """Why ``url`` cannot be the provider's (https; http only on a loopback address, for a
    provider on the same machine) or, with ``https_only`` off, the callback's; or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute http(s) URL"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    if https_only and parts.scheme == "http" and not _loopback(host):
        return "must be https (http only for a provider on a loopback address)"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def role_map_problem(role_map: Mapping[str, object]) -> str | None:
    if not role_map:
        return 'must map at least one claim value to a role, e.g. {"kpi-admins": "admin"}'
    for value, role in role_map.items():
        if not value:
            return "a claim value must not be empty"
        if role not in USER_ROLES:
            return f"{value!r} maps to {role!r}; roles are {', '.join(USER_ROLES)}"
    return None


# --- PKCE, state and nonce -------------------------------------------------------------------

# RFC 7636 4.1: 43 to 128 characters of [A-Za-z0-9-._~].
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 4.2); ValueError for a bad verifier."""
    if not _VERIFIER_RE.match(verifier):
        raise ValueError("a PKCE verifier is 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class LoginStart:
    """The secrets of one sign-in: ``state`` comes back on the callback, ``nonce`` in the ID
    token, ``verifier`` goes to the token endpoint (256 random bits each)."""

    state: str
    nonce: str
    verifier: str = field(repr=False)

    @classmethod
    def new(cls) -> LoginStart:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48))


def same_secret(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a secret with what came back (any text, None)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass")
    )


def authorization_url(endpoint: str, config: OidcConfig, login: LoginStart) -> str:
    """Where the browser is sent: the provider's endpoint with the code request (its own query
    parameters kept)."""
    parts = urlsplit(endpoint)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [
        ("response_type", "code"),
        ("client_id", config.client_id),
        ("redirect_uri", config.redirect_url),
        ("scope", " ".join(config.scopes)),
        ("state", login.state),
        ("nonce", login.nonce),
        ("code_challenge", pkce_challenge(login.verifier)),
        ("code_challenge_method", "S256"),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def callback_code(params: Mapping[str, str], expected_state: str) -> str:
    """The authorization code of a callback whose state is the login's; SsoRefused otherwise
    (a wrong state before anything else: the provider's error is believed only with it)."""
    if not same_secret(expected_state, params.get("state")):
        raise SsoRefused("state", "the callback's state is not the one this browser's login sent")
    error = params.get("error")
    if error:
        described = params.get("error_description", "")
        raise SsoRefused("denied", f"the provider answered {error!r} {described!r}"[:500])
    code = params.get("code")
    if not code:
        raise SsoRefused("provider", "the callback carries no authorization code")
    return code


# --- claims to an account --------------------------------------------------------------------


@dataclass(frozen=True)
class SsoIdentity:
    """Who signed in: the provider's subject, the local username, display name and account."""

    issuer: str
    subject: str
    username: str
    display_name: str | None
    account: Account


def claim(claims: Mapping[str, object], name: str) -> object | None:
    """The claim called ``name``; failing that, a dotted path into nested objects
    (``realm_access.roles``). A claim whose own name has dots (``https://x.io/roles``) wins."""
    if name in claims:
        return claims[name]
    node: object = claims
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def claim_strings(value: object) -> list[str]:
    """A claim's values: one string, or the strings of a list (other items are ignored)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value[:CLAIM_VALUES_MAX] if isinstance(v, str)]
    return []


def mapped_role(values: Sequence[str], role_map: Mapping[str, str]) -> str | None:
    """The most capable role any of ``values`` maps to, or None."""
    roles = {role_map[v] for v in values if v in role_map}
    return next((r for r in ROLE_PRECEDENCE if r in roles), None)


def _shown(values: Sequence[str]) -> str:
    listed = ", ".join(repr(v[:64]) for v in values[:10])
    return f"[{listed}{', …' if len(values) > 10 else ''}]"


def _username(claims: Mapping[str, object], name: str) -> str:
    for candidate in dict.fromkeys((name, "email", "sub")):
        value = claim(claims, candidate)
        if isinstance(value, str) and value.strip():
            problem = username_problem(value.strip())
            if problem is not None:
                raise SsoRefused("claims", f"the username claim {candidate!r} {problem}")
            return value.strip()
    raise SsoRefused("claims", f"the ID token has no {name!r}, 'email' or 'sub' to name the user")


def identity_of(claims: Mapping[str, object], issuer: str, mapping: ClaimMapping) -> SsoIdentity:
    """The identity a verified ID token's claims describe; SsoRefused naming the claim when
    they map to no role (never a default one) or cannot make an account."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > SUBJECT_MAX:
        raise SsoRefused("claims", f"'sub' must be a string of 1 to {SUBJECT_MAX} characters")
    username = _username(claims, mapping.username_claim)
    values = claim_strings(claim(claims, mapping.role_claim))
    role = mapped_role(values, mapping.role_map)
    if role is None:
        raise SsoRefused(
            "unmapped",
            f"the claim {mapping.role_claim!r} holds {_shown(values)}: "
            "none of these values is in KPI_OIDC_ROLE_MAP",
        )
    teams: tuple[str, ...] = ()
    if role == "supervisor" and mapping.team_claim:
        teams = tuple(claim_strings(claim(claims, mapping.team_claim)))
    specialist: str | None = None
    if role == "specialist":
        if not mapping.specialist_claim:
            raise SsoRefused(
                "claims", "the role is specialist but KPI_OIDC_SPECIALIST_CLAIM is not set"
            )
        value = claim(claims, mapping.specialist_claim)
        if not isinstance(value, str) or not value:
            raise SsoRefused(
                "claims",
                f"the role is specialist but the claim {mapping.specialist_claim!r} "
                "holds no specialist id",
            )
        specialist = value
    try:
        account = check_account(Account(role, teams, specialist))
    except AccountError as exc:
        source = {"team_ids": mapping.team_claim, "specialist_id": mapping.specialist_claim}
        raise SsoRefused(
            "claims", f"the claim {source.get(exc.field) or exc.field!r} {exc.reason}"
        ) from None
    name = claims.get("name")
    display = name if isinstance(name, str) and name and not display_name_problem(name) else None
    return SsoIdentity(issuer, subject, username, display, account)
