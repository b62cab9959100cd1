"""The pure rules of single sign-on (services.scoring.sso.domain): configuration, PKCE, the
login's state, and claims to an account, against simple reference models."""

from __future__ import annotations

import base64
import hashlib
import string
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.sso.domain import (
    CALLBACK_PATH,
    REFUSALS,
    ROLE_PRECEDENCE,
    ClaimMapping,
    LoginStart,
    OidcConfig,
    SsoRefused,
    authorization_url,
    callback_code,
    claim,
    identity_of,
    pkce_challenge,
    same_secret,
)
from shared.settings import SettingsError, load_settings

UNRESERVED = string.ascii_letters + string.digits + "-._~"
ISSUER = "https://id.example.com"
MAPPING = ClaimMapping(
    role_map={"kpi-admins": "admin", "leads": "supervisor", "agents": "specialist"},
    team_claim="teams",
    specialist_claim="agent_id",
)


def _config(**settings: Any) -> OidcConfig | None:
    base = {
        "oidc_issuer": ISSUER,
        "oidc_client_id": "kpi",
        "oidc_redirect_url": "https://kpi.example.com" + CALLBACK_PATH,
        "oidc_role_map": '{"kpi-admins": "admin"}',
    }
    return OidcConfig.from_settings(load_settings(**{**base, **settings}))


# --- PKCE ------------------------------------------------------------------------------------


def test_pkce_challenge_is_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@given(st.text(UNRESERVED, min_size=43, max_size=128))
def test_pkce_challenge_is_the_unpadded_base64url_sha256(verifier: str) -> None:
    expected = base64.b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    expected = expected.replace("+", "-").replace("/", "_").rstrip("=")
    assert pkce_challenge(verifier) == expected and len(expected) == 43


@given(st.text(min_size=0, max_size=200))
def test_pkce_refuses_what_rfc_7636_calls_no_verifier(verifier: str) -> None:
    valid = 43 <= len(verifier) <= 128 and all(c in UNRESERVED for c in verifier)
    if valid:
        assert pkce_challenge(verifier)
    else:
        with pytest.raises(ValueError, match="PKCE verifier"):
            pkce_challenge(verifier)


def test_a_new_login_has_fresh_valid_secrets() -> None:
    logins = [LoginStart.new() for _ in range(50)]
    for part in ("state", "nonce", "verifier"):
        assert len({getattr(x, part) for x in logins}) == 50
    assert all(pkce_challenge(x.verifier) for x in logins)
    assert logins[0].verifier not in repr(logins[0])


# --- state -----------------------------------------------------------------------------------


@given(st.text(), st.one_of(st.none(), st.text()))
def test_same_secret_is_equality_of_non_empty_text(expected: str, given_: str | None) -> None:
    assert same_secret(expected, given_) == (bool(expected) and expected == given_)


def test_same_secret_takes_any_text_a_query_may_carry() -> None:
    assert not same_secret("abc", "\ud800\x00中")  # a lone surrogate, NUL: False, no error


@given(st.text(min_size=1), st.text(min_size=1))
def test_a_callback_with_another_state_is_refused_before_anything_it_says(
    state: str, other: str
) -> None:
    params = {"state": other, "error": "access_denied", "code": "c"}
    if state == other:
        with pytest.raises(SsoRefused) as caught:
            callback_code(params, state)
        assert caught.value.code == "denied"
    else:
        with pytest.raises(SsoRefused) as caught:
            callback_code(params, state)
        assert caught.value.code == "state"


def test_callback_code() -> None:
    assert callback_code({"state": "s", "code": "the-code"}, "s") == "the-code"
    for params, code in (
        ({"code": "c"}, "state"),
        ({"state": "", "code": "c"}, "state"),
        ({"state": "s"}, "provider"),
        ({"state": "s", "error": "access_denied", "error_description": "no"}, "denied"),
    ):
        with pytest.raises(SsoRefused) as caught:
            callback_code(params, "s")
        assert caught.value.code == code and code in REFUSALS


def test_authorization_url_asks_for_a_code_with_pkce_state_and_nonce() -> None:
    config = _config(oidc_scopes="openid  email openid groups")
    assert config is not None
    login = LoginStart.new()
    url = authorization_url("https://id.example.com/authorize?tenant=north", config, login)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "id.example.com", "/authorize")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "tenant": "north",  # the provider's own parameter is kept
        "response_type": "code",
        "client_id": "kpi",
        "redirect_uri": "https://kpi.example.com/v1/auth/oidc/callback",
        "scope": "openid email groups",
        "state": login.state,
        "nonce": login.nonce,
        "code_challenge": pkce_challenge(login.verifier),
        "code_challenge_method": "S256",
    }
    assert login.verifier not in url  # only its challenge travels through the browser


# --- configuration ---------------------------------------------------------------------------


def test_sso_is_off_without_an_issuer() -> None:
    assert OidcConfig.from_settings(load_settings()) is None


def test_configuration_defaults_and_derived_redirect() -> None:
    with pytest.raises(SettingsError, match="KPI_OIDC_REDIRECT_URL"):
        _config(oidc_redirect_url="")
    settings = load_settings(
        oidc_issuer=ISSUER + "/",
        oidc_client_id="kpi",
        oidc_client_secret="s3cret",
        oidc_role_map='{"g": "admin"}',
        public_url="https://kpi.example.com/dash/",
    )
    derived = OidcConfig.from_settings(settings, settings.public_url)
    assert derived is not None
    assert derived.redirect_url == "https://kpi.example.com/dash/v1/auth/oidc/callback"
    assert derived.issuer == ISSUER and derived.scopes == ("openid", "email", "profile")
    assert derived.mapping.username_claim == "preferred_username"
    assert derived.mapping.role_claim == "groups" and derived.mapping.team_claim is None
    assert derived.client_secret == "s3cret" and "s3cret" not in repr(derived)


@pytest.mark.parametrize(
    ("settings", "variable", "reason"),
    [
        ({"oidc_client_id": ""}, "KPI_OIDC_CLIENT_ID", "must be set"),
        ({"oidc_scopes": "email profile"}, "KPI_OIDC_SCOPES", "openid"),
        ({"oidc_issuer": "http://id.example.com"}, "KPI_OIDC_ISSUER", "https"),
        ({"oidc_issuer": "id.example.com"}, "KPI_OIDC_ISSUER", "absolute"),
        ({"oidc_issuer": "https://id.example.com/?x=1"}, "KPI_OIDC_ISSUER", "query"),
        ({"oidc_role_map": "{}"}, "KPI_OIDC_ROLE_MAP", "at least one"),
        ({"oidc_role_map": '{"g": "root"}'}, "KPI_OIDC_ROLE_MAP", "'root'"),
        ({"oidc_role_map": '{"g": "service"}'}, "KPI_OIDC_ROLE_MAP", "roles are"),
        ({"oidc_role_claim": " "}, "KPI_OIDC_ROLE_CLAIM", "empty"),
        ({"oidc_redirect_url": "ftp://x/cb"}, "KPI_OIDC_REDIRECT_URL", "http"),
    ],
)
def test_bad_configuration_names_the_variable(
    settings: dict[str, str], variable: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _config(**settings)
    assert variable in str(caught.value) and reason in str(caught.value)


def test_a_role_map_that_is_no_json_object_is_refused_at_load() -> None:
    with pytest.raises(SettingsError, match="KPI_OIDC_ROLE_MAP"):
        load_settings(oidc_role_map="[not json")


def test_http_issuer_on_loopback_is_allowed() -> None:
    for issuer in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        config = _config(oidc_issuer=issuer)
        assert config is not None and config.issuer == issuer


# --- claims to an account: against a reference model -----------------------------------------

GROUPS = ["kpi-admins", "leads", "agents", "sales", "", "中文组"]
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1)


def _expected_role(groups: list[str]) -> str | None:
    mapped = [MAPPING.role_map[g] for g in groups if g in MAPPING.role_map]
    for role in ("admin", "supervisor", "specialist"):  # who may do most wins
        if role in mapped:
            return role
    return None


@given(
    groups=st.one_of(
        st.lists(st.sampled_from(GROUPS), max_size=6),
        st.sampled_from(GROUPS),
        st.none(),
        st.integers(),
    ),
    teams=st.lists(st.text(string.ascii_lowercase, min_size=1, max_size=8), max_size=4),
    agent=st.one_of(st.none(), st.text(string.ascii_lowercase + ".", min_size=1, max_size=12)),
)
def test_claims_map_to_the_most_capable_role_or_are_refused(
    groups: object, teams: list[str], agent: str | None
) -> None:
    claims: dict[str, object] = {"sub": "s-1", "preferred_username": "ann", "groups": groups}
    claims.update({"teams": teams, "agent_id": agent})
    listed = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
    role = _expected_role(listed)
    if role is None:
        with pytest.raises(SsoRefused) as caught:
            identity_of(claims, ISSUER, MAPPING)
        assert caught.value.code == "unmapped" and "'groups'" in caught.value.reason
        return
    if role == "specialist" and not agent:
        with pytest.raises(SsoRefused) as caught:
            identity_of(claims, ISSUER, MAPPING)
        assert caught.value.code == "claims" and "'agent_id'" in caught.value.reason
        return
    identity = identity_of(claims, ISSUER, MAPPING)
    assert identity.account.role == role
    assert identity.account.team_ids == (tuple(sorted(set(teams))) if role == "supervisor" else ())
    assert identity.account.specialist_id == (agent if role == "specialist" else None)
    assert (identity.issuer, identity.subject, identity.username) == (ISSUER, "s-1", "ann")


def test_role_precedence_is_admin_supervisor_specialist() -> None:
    assert ROLE_PRECEDENCE == ("admin", "supervisor", "specialist")


@given(
    st.dictionaries(
        st.sampled_from(["preferred_username", "email", "sub"]), ids.filter(lambda s: len(s) < 40)
    )
)
def test_username_falls_back_to_email_then_sub(present: dict[str, str]) -> None:
    claims: dict[str, object] = {"preferred_username": "", "email": "", "sub": "subject-1"}
    claims.update(present, groups=["kpi-admins"])
    # The first of the three that is present and not blank, without its outer white space.
    named = [v for k in ("preferred_username", "email", "sub") if (v := str(claims[k]).strip())]
    if not named:
        with pytest.raises(SsoRefused, match="to name the user"):
            identity_of(claims, ISSUER, MAPPING)
        return
    assert identity_of(claims, ISSUER, MAPPING).username == named[0]


def test_a_user_nothing_names_is_refused() -> None:
    claims = {"sub": " ", "email": "", "groups": ["kpi-admins"]}
    with pytest.raises(SsoRefused) as caught:
        identity_of(claims, ISSUER, MAPPING)
    assert caught.value.code == "claims" and "'preferred_username'" in caught.value.reason


def test_refusals_name_the_claim() -> None:
    cases: list[tuple[dict[str, Any], ClaimMapping, str, str]] = [
        ({"groups": ["kpi-admins"]}, MAPPING, "claims", "'sub'"),
        ({"sub": "x" * 256, "groups": ["kpi-admins"]}, MAPPING, "claims", "'sub'"),
        ({"sub": "s", "groups": ["nobody"]}, MAPPING, "unmapped", "KPI_OIDC_ROLE_MAP"),
        ({"sub": "s", "groups": ["agents"], "agent_id": 7}, MAPPING, "claims", "'agent_id'"),
        (
            {"sub": "s", "groups": ["agents"]},
            ClaimMapping(role_map={"agents": "specialist"}),
            "claims",
            "KPI_OIDC_SPECIALIST_CLAIM",
        ),
        ({"sub": "s", "groups": ["leads"], "teams": ["a\x01"]}, MAPPING, "claims", "'teams'"),
        (
            {"sub": "s", "preferred_username": "a\x00b", "groups": ["kpi-admins"]},
            MAPPING,
            "claims",
            "'preferred_username'",
        ),
    ]
    for claims, mapping, code, named in cases:
        with pytest.raises(SsoRefused) as caught:
            identity_of(claims, ISSUER, mapping)
        assert caught.value.code == code and named in caught.value.reason, (claims, caught.value)


def test_unmapped_refusal_shows_what_the_claim_held_briefly() -> None:
    with pytest.raises(SsoRefused) as caught:
        identity_of({"sub": "s", "groups": [f"g{i}" for i in range(5000)]}, ISSUER, MAPPING)
    assert "'g0'" in caught.value.reason and "'g10'" not in caught.value.reason
    assert len(caught.value.reason) < 400


def test_claim_reads_a_dotted_path_unless_the_name_itself_has_dots() -> None:
    claims = {
        "realm_access": {"roles": ["leads"]},
        "https://kpi.example.com/roles": ["kpi-admins"],
        "a": {"b": 1},
        "a.b": 2,
    }
    assert claim(claims, "realm_access.roles") == ["leads"]
    assert claim(claims, "https://kpi.example.com/roles") == ["kpi-admins"]
    assert claim(claims, "a.b") == 2
    assert claim(claims, "realm_access.nope") is None and claim(claims, "x.y.z") is None
    mapping = ClaimMapping(role_map={"leads": "supervisor"}, role_claim="realm_access.roles")
    identity = identity_of({"sub": "s", **claims}, ISSUER, mapping)
    assert identity.account.role == "supervisor" and identity.account.team_ids == ()


def test_display_name_comes_from_name_when_storable() -> None:
    base = {"sub": "s", "groups": "kpi-admins"}
    assert identity_of({**base, "name": "王 Ann"}, ISSUER, MAPPING).display_name == "王 Ann"
    assert identity_of({**base, "name": "bad\x07"}, ISSUER, MAPPING).display_name is None
    assert identity_of({**base, "name": "x" * 201}, ISSUER, MAPPING).display_name is None
