"""Settings of single sign-on by OpenID Connect (``KPI_OIDC_*``); scoring checks them together."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OidcSettings(BaseSettings):
    """The ``KPI_OIDC_*`` variables; ``Settings`` inherits them (see docs/configuration.md).

    Each is read as given here; whether they fit together (a client id with the issuer, a role
    map, a redirect URL) is scoring's check at start-up (services.scoring.sso.domain), so the
    services that do not sign anyone in never refuse to start over them.
    """

    model_config = SettingsConfigDict(env_prefix="KPI_", extra="ignore", frozen=True)

    oidc_issuer: str = Field(
        default="",
        max_length=512,
        description="Issuer URL of the OpenID Connect provider; when set, the dashboard offers "
        "'Sign in with SSO'. https, or http on a loopback address.",
    )
    oidc_client_id: str = Field(
        default="", max_length=1024, description="Client id registered at the provider."
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description="Client secret (HTTP Basic at the token endpoint); unset for a public "
        "client, which PKCE alone protects.",
    )
    oidc_scopes: str = Field(
        default="openid email profile",
        max_length=1024,
        description="Scopes asked for, space-separated; must include openid.",
    )
    oidc_redirect_url: str = Field(
        default="",
        max_length=2048,
        description="The callback URL registered at the provider (default: KPI_PUBLIC_URL + "
        "/v1/auth/oidc/callback).",
    )
    oidc_username_claim: str = Field(
        default="preferred_username",
        max_length=256,
        description="ID-token claim naming the local username (email, then sub, when absent).",
    )
    oidc_role_claim: str = Field(
        default="groups",
        max_length=256,
        description="ID-token claim whose values KPI_OIDC_ROLE_MAP maps to roles "
        "(a string or a list; a dotted path reaches a nested claim).",
    )
    oidc_role_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='JSON {claim value: role}, e.g. {"kpi-admins": "admin", "team-leads": '
        '"supervisor", "agents": "specialist"}; a user matching none is refused (its JSON is '
        "read by Settings, like the other JSON variables).",
    )
    oidc_team_claim: str = Field(
        default="",
        max_length=256,
        description="ID-token claim listing a supervisor's team ids (unset: no teams from SSO).",
    )
    oidc_specialist_claim: str = Field(
        default="",
        max_length=256,
        description="ID-token claim holding a specialist's specialist id (needed when a role "
        "maps to specialist).",
    )

    @field_validator("oidc_client_secret")
    @classmethod
    def _blank_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # Compose passes an unset variable as "": a public client.
        return value if value is not None and value.get_secret_value() else None
