"""Single sign-on by OpenID Connect: accounts of a provider's subject (no password), and the
sign-ins under way at the provider.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-11
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a downgrade leaves in place of a single-sign-on account's missing password: no argon2
# hash, so it never verifies; an admin may set a password, or remove the account.
NO_PASSWORD = "!sso"


def upgrade() -> None:
    op.alter_column("users", "password_hash", existing_type=sa.String(512), nullable=True)
    op.add_column("users", sa.Column("sso_issuer", sa.String(512), nullable=True))
    op.add_column("users", sa.Column("sso_subject", sa.String(255), nullable=True))
    op.create_unique_constraint("uq_users_sso", "users", ["sso_issuer", "sso_subject"])
    op.create_check_constraint(
        op.f("ck_users_sso_identity"),
        "users",
        "(sso_issuer IS NULL) = (sso_subject IS NULL)",
    )
    op.create_check_constraint(
        op.f("ck_users_credential"),
        "users",
        "password_hash IS NOT NULL OR sso_subject IS NOT NULL",
    )
    op.create_table(
        "oidc_logins",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_oidc_logins")),
    )
    op.create_index(op.f("ix_oidc_logins_expires_at"), "oidc_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_table("oidc_logins")
    op.drop_constraint(op.f("ck_users_credential"), "users", type_="check")
    op.drop_constraint(op.f("ck_users_sso_identity"), "users", type_="check")
    op.drop_constraint("uq_users_sso", "users", type_="unique")
    # Their sessions end; the accounts stay (other records name their usernames).
    op.execute(
        "DELETE FROM user_sessions WHERE user_id IN "
        "(SELECT id FROM users WHERE password_hash IS NULL)"
    )
    op.execute(f"UPDATE users SET password_hash = '{NO_PASSWORD}' WHERE password_hash IS NULL")
    op.drop_column("users", "sso_subject")
    op.drop_column("users", "sso_issuer")
    op.alter_column("users", "password_hash", existing_type=sa.String(512), nullable=False)
