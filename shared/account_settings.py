"""Settings of user accounts: sessions, sign-in throttling, password hashing, the first admin."""

from __future__ import annotations

import datetime as dt

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.accounts import CookieSecure, SessionPolicy, Throttle, password_problem
from shared.passwords import HashParams


class AccountSettings(BaseSettings):
    """The ``KPI_SESSION_*``, ``KPI_LOGIN_*`` and ``KPI_PASSWORD_*`` variables; ``Settings``
    inherits them (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="KPI_", extra="ignore", frozen=True)

    session_idle_minutes: float = Field(
        default=60.0,
        gt=0,
        le=7 * 24 * 60,
        description="A dashboard session not used for this many minutes ends.",
    )
    session_max_hours: float = Field(
        default=12.0,
        gt=0,
        le=30 * 24,
        description="A dashboard session ends this many hours after sign-in at the latest.",
    )
    session_cookie_secure: CookieSecure = Field(
        default="auto",
        description="Secure attribute of the session cookie: true, false, or auto (when the "
        "request came over https or KPI_PUBLIC_URL is https).",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed sign-ins of one username within KPI_LOGIN_WINDOW_MINUTES before "
        "further attempts are answered 429 with Retry-After.",
    )
    login_max_failures_per_address: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed sign-ins from one client address within the window before 429.",
    )
    login_window_minutes: float = Field(
        default=15.0, gt=0, le=24 * 60, description="The window of the two limits above."
    )
    password_time_cost: int = Field(
        default=3, ge=1, le=20, description="argon2id iterations of password hashes."
    )
    password_memory_kib: int = Field(
        default=64 * 1024,
        ge=8 * 1024,
        le=4 * 1024 * 1024,
        description="argon2id memory of password hashes, in KiB.",
    )
    password_parallelism: int = Field(
        default=4, ge=1, le=16, description="argon2id lanes of password hashes."
    )
    bootstrap_admin_password: SecretStr | None = Field(
        default=None,
        description="When set and no user exists, scoring creates the user 'admin' with this "
        "password at start-up.",
    )

    @field_validator("bootstrap_admin_password")
    @classmethod
    def _check_bootstrap_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # compose passes an unset variable as ""
        problem = password_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def session_policy(self) -> SessionPolicy:
        return SessionPolicy(
            idle=dt.timedelta(minutes=self.session_idle_minutes),
            max_age=dt.timedelta(hours=self.session_max_hours),
        )

    @property
    def login_throttles(self) -> tuple[Throttle, Throttle]:
        """Per username, then per client address."""
        window = dt.timedelta(minutes=self.login_window_minutes)
        return (
            Throttle(self.login_max_failures, window),
            Throttle(self.login_max_failures_per_address, window),
        )

    @property
    def password_params(self) -> HashParams:
        return HashParams(
            time_cost=self.password_time_cost,
            memory_kib=self.password_memory_kib,
            parallelism=self.password_parallelism,
        )
