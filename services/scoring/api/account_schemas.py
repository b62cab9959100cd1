"""Bodies of the sign-in, user and token routes (their rules: shared.accounts)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.accounts import DISPLAY_NAME_MAX, USERNAME_MAX
from shared.text import ID_RULE

Username: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=USERNAME_MAX), ID_RULE
]
UserRole: TypeAlias = Literal["admin", "supervisor", "specialist"]
TokenRole: TypeAlias = Literal["admin", "supervisor", "specialist", "service"]
# Passwords are plain strings here and checked by the route (shared.accounts.password_problem),
# whose 422 names the field without echoing the value, as a pydantic constraint would.
Password: TypeAlias = str


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: Username
    password: Password = Field(description="The account's password (at most 1024 characters).")


class PasswordChangeIn(_In):
    current_password: Password
    new_password: Password = Field(description="At least 12 and at most 1024 characters.")


class PasswordResetIn(_In):
    password: Password = Field(description="At least 12 and at most 1024 characters.")


class UserOut(_Out):
    username: str
    display_name: str | None
    role: str
    team_ids: list[str]
    specialist_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    last_login_at: dt.datetime | None
    disabled_at: dt.datetime | None
    sso: bool = Field(
        default=False,
        description="Signs in by single sign-on (OpenID Connect) only: no password here; role, "
        "teams and specialist id follow the provider's claims at each sign-in.",
    )


class UserList(_Out):
    users: list[UserOut]


class UserIn(_In):
    username: Username
    password: Password = Field(description="At least 12 and at most 1024 characters.")
    role: UserRole
    team_ids: list[Annotated[str, ID_RULE]] = Field(
        default_factory=list, max_length=1000, description="Teams of a supervisor."
    )
    specialist_id: Username | None = Field(
        default=None, description="The specialist id a specialist account is bound to."
    )
    display_name: Annotated[str, StringConstraints(max_length=DISPLAY_NAME_MAX), ID_RULE] | None = (
        None
    )


class UserUpdate(_In):
    """Only what is given changes. A new role starts without teams or specialist id unless
    they are given with it."""

    role: UserRole | None = None
    team_ids: list[Annotated[str, ID_RULE]] | None = Field(default=None, max_length=1000)
    specialist_id: Username | None = None
    display_name: Annotated[str, StringConstraints(max_length=DISPLAY_NAME_MAX), ID_RULE] | None = (
        None
    )
    disabled: bool | None = Field(
        default=None, description="true disables the account and ends its sessions."
    )


class SessionOut(_Out):
    """Who the caller is; for a dashboard session also its user, CSRF token and end."""

    role: str
    subject: str
    team_ids: list[str]
    specialist_id: str | None
    user: UserOut | None = Field(description="The signed-in user; null for a bearer token.")
    csrf_token: str | None = Field(
        description="Send it as X-CSRF-Token with every POST, PUT, PATCH and DELETE made with "
        "the session cookie; null for a bearer token."
    )
    expires_at: dt.datetime | None = Field(
        description="When the session ends unless used again (idle timeout, or its maximum "
        "lifetime); null for a bearer token."
    )


class SignInMethods(_Out):
    """How one may sign in to the dashboard (asked before anyone is signed in)."""

    password: bool = Field(description="Username and password (POST /v1/auth/login).")
    sso: bool = Field(description="Single sign-on by OpenID Connect is configured.")
    sso_login_url: str | None = Field(
        description="Where the browser goes to sign in with SSO; null when it is off."
    )


class TokenOut(_Out):
    id: uuid.UUID
    role: str
    subject: str
    team_ids: list[str]
    description: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenList(_Out):
    tokens: list[TokenOut]


class TokenIn(_In):
    role: TokenRole
    subject: str = Field(
        default="", max_length=USERNAME_MAX, description="Supervisor, specialist or system id."
    )
    team_ids: list[str] = Field(default_factory=list, max_length=1000)
    description: Annotated[str, StringConstraints(max_length=200), ID_RULE] | None = None
    expires_in: str | None = Field(
        default=None,
        max_length=32,
        description="Lifetime such as 30m, 12h, 90d or 2w; null: never expires.",
    )


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself: shown this once, only its hash is kept.")
