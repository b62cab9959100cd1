"""``kpi user …`` and ``kpi token list|revoke``: people's accounts and API tokens."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared import users

T = TypeVar("T")
HOME = Annotated[
    Path, typer.Option("--home", envvar="KPI_HOME", help="Where local data and logs live.")
]
PASSWORD_STDIN = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from standard input instead of prompting."
    ),
]
user_app = typer.Typer(help="Manage the accounts people sign in with.", no_args_is_help=True)


def register(app: typer.Typer, token_app: typer.Typer) -> None:
    """Add ``kpi user`` and the token commands of this module to the CLI."""
    app.add_typer(user_app, name="user")
    token_app.command("list")(token_list)
    token_app.command("revoke")(token_revoke)


def _fail(option: str, reason: str) -> typer.Exit:
    from kpi.cli import console

    # The value is not echoed: it may hold control characters (terminal escapes).
    console.print(f"[red]{option}:[/] {reason}")
    return typer.Exit(2)


def _run(home: Path, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """``work`` in one transaction on the platform's database (KPI_DATABASE_URL or `kpi up`'s)."""
    from kpi.cli import _database_url
    from shared.db import create_engine, create_sessionmaker, session_scope

    async def main() -> T:
        engine = create_engine(_database_url(home), pool_size=1, application_name="kpi-cli")
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _password(option: str, from_stdin: bool) -> str:
    from shared.accounts import password_problem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem is not None:
        raise _fail(option, problem)
    return password


def _hash(password: str) -> str:
    from kpi.cli import _settings
    from shared.passwords import Passwords

    return Passwords(_settings().password_params).hash(password)


def _username(value: str) -> str:
    from shared.accounts import username_problem

    problem = username_problem(value)
    if problem is not None:
        raise _fail("--username", problem)
    return value


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option(help="The login (letters' case is ignored).")],
    role: Annotated[str, typer.Option(help="admin, supervisor or specialist")],
    team: Annotated[list[str] | None, typer.Option(help="Team a supervisor runs (repeat).")] = None,
    specialist: Annotated[
        str | None, typer.Option(help="The specialist id a specialist account is bound to.")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="Name shown in the dashboard.")] = None,
    password_stdin: PASSWORD_STDIN = False,
    home: HOME = Path(".kpi"),
) -> None:
    """Create a user account; the password is asked twice (or read from standard input)."""
    from kpi.cli import console
    from shared import users
    from shared.accounts import Account, AccountError, check_account, display_name_problem

    _username(username)
    try:
        account = check_account(Account(role, tuple(team or ()), specialist))
    except AccountError as exc:
        option = {"team_ids": "--team", "specialist_id": "--specialist"}.get(exc.field, "--role")
        raise _fail(option, exc.reason) from None
    if display_name is not None and (problem := display_name_problem(display_name)):
        raise _fail("--display-name", problem)
    password_hash = _hash(_password("password", password_stdin))

    async def create(session: AsyncSession) -> None:
        await users.create_user(session, username, account, password_hash, display_name)

    try:
        _run(home, create)
    except users.UsernameTaken:
        raise _fail(
            "--username", "an account with this login exists (logins ignore case)"
        ) from None
    console.print(f"created user {username} ({account.role})")


@user_app.command("list")
def user_list(home: HOME = Path(".kpi")) -> None:
    """Every account: role, teams or specialist, last sign-in, whether disabled."""
    from rich.console import Console

    from shared import users

    async def fetch(session: AsyncSession) -> list[users.User]:
        return await users.list_users(session)

    table = Table("username", "display name", "role", "teams / specialist", "last login", "state")
    for u in _run(home, fetch):
        scope = ", ".join(u.team_ids or ()) if u.role == "supervisor" else u.specialist_id or ""
        last = u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "never"
        state = ("disabled" if u.disabled_at else "active") + (", SSO" if u.is_sso else "")
        table.add_row(u.username, u.display_name or "", u.role, scope, last, state)
    Console().print(table)


def _change(
    home: Path, username: str, change: Callable[[AsyncSession, users.User], Awaitable[None]]
) -> None:
    from shared import users

    async def work(session: AsyncSession) -> bool:
        user = await users.get_user(session, username, lock=True)
        if user is None:
            return False
        await change(session, user)
        return True

    if not _run(home, work):
        raise _fail("USERNAME", "no account has this login")


@user_app.command("disable")
def user_disable(username: str, home: HOME = Path(".kpi")) -> None:
    """Disable an account: it can no longer sign in and its sessions end."""
    from kpi.cli import console
    from shared import users

    async def disable(session: AsyncSession, user: users.User) -> None:
        await users.update_user(session, user, disabled=True)

    _change(home, username, disable)
    console.print(f"disabled {username}; its sessions have ended")


@user_app.command("enable")
def user_enable(username: str, home: HOME = Path(".kpi")) -> None:
    """Enable a disabled account again."""
    from kpi.cli import console
    from shared import users

    async def enable(session: AsyncSession, user: users.User) -> None:
        await users.update_user(session, user, disabled=False)

    _change(home, username, enable)
    console.print(f"enabled {username}")


@user_app.command("reset-password")
def user_reset_password(
    username: str, password_stdin: PASSWORD_STDIN = False, home: HOME = Path(".kpi")
) -> None:
    """Set a new password; the account's sessions end (not for single sign-on accounts)."""
    from kpi.cli import console
    from shared import users
    from shared.accounts import AccountError

    password_hash = _hash(_password("password", password_stdin))

    async def reset(session: AsyncSession, user: users.User) -> None:
        try:
            await users.set_password(session, user, password_hash)
        except AccountError as exc:
            raise _fail("USERNAME", exc.reason) from None

    _change(home, username, reset)
    console.print(f"password of {username} set; its sessions have ended")


def token_list(home: HOME = Path(".kpi")) -> None:
    """Every API token: id, role, subject, teams, note, created, expires, revoked (no secrets)."""
    from rich.console import Console

    from shared.auth import ApiToken, list_tokens

    async def fetch(session: AsyncSession) -> list[ApiToken]:
        return await list_tokens(session)

    def moment(value: object) -> str:
        return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else "—"

    table = Table("id", "role", "subject", "teams", "description", "created", "expires", "revoked")
    for t in _run(home, fetch):
        table.add_row(
            str(t.id), t.role, t.subject, ", ".join(t.team_ids or ()), t.description or "",
            moment(t.created_at), moment(t.expires_at) if t.expires_at else "never",
            moment(t.revoked_at) if t.revoked_at else "",
        )  # fmt: skip
    Console(width=200).print(table)


def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The id `kpi token list` shows.")],
    home: HOME = Path(".kpi"),
) -> None:
    """Revoke a token: every service refuses it within KPI_AUTH_CACHE_SECONDS."""
    from kpi.cli import console
    from shared.auth import ApiToken, revoke_token

    try:
        ident = uuid.UUID(token_id)
    except ValueError:
        raise _fail("ID", "is not a token id (a UUID from `kpi token list`)") from None

    async def revoke(session: AsyncSession) -> ApiToken | None:
        return await revoke_token(session, ident)

    if _run(home, revoke) is None:
        raise _fail("ID", "no token has this id")
    console.print(f"revoked token {ident}")
