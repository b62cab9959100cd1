"""``kpi`` command line (Typer): run the local platform and operate it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from kpi.stack import SERVICES, LocalStack

app = typer.Typer(help="KPI platform for after-sales service specialists.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
console = Console(stderr=True)

HOME_OPTION = Annotated[
    Path, typer.Option("--home", envvar="KPI_HOME", help="Where local data and logs live.")
]


def _state_file(home: Path) -> Path:
    return home / "stack.json"


def _database_url(home: Path) -> str:
    """KPI_DATABASE_URL, else the database of a running `kpi up` in this directory."""
    url = os.environ.get("KPI_DATABASE_URL")
    if url:
        return url
    state = _state_file(home)
    if state.exists():
        return str(json.loads(state.read_text())["database_url"])
    console.print(
        "[red]No database:[/] set KPI_DATABASE_URL or start the platform with 'kpi up' "
        f"(looked for {state})."
    )
    raise typer.Exit(2)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


@app.command()
def up(
    home: HOME_OPTION = Path(".kpi"),
    partitions: Annotated[
        int, typer.Option(envvar="KPI_TOPIC_PARTITIONS", min=1, help="Partitions per topic.")
    ] = 6,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 60,
) -> None:
    """Start PostgreSQL, the broker and the three services; Ctrl-C stops everything."""
    started = time.monotonic()
    stack = LocalStack(
        home=home.resolve(), say=lambda m: console.print(f"• {m}"), partitions=partitions
    )
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        stack.start_infrastructure()
        stack.migrate()
        stack.start_services()
        stack.wait_ready(timeout)
        _state_file(stack.home).write_text(
            json.dumps({"database_url": stack.database_url, "bootstrap": stack.bootstrap,
                        "services": {n: s.url for n, s in stack.services.items()}})
        )  # fmt: skip
        console.print(f"\n[bold green]KPI platform ready[/] in {time.monotonic() - started:.1f}s")
        for name in SERVICES:
            svc = stack.services[name]
            console.print(f"  {name:<8} {svc.url}   (docs {svc.url}/docs, log {svc.log_path})")
        console.print(f"  dashboard {stack.services['scoring'].url}/")
        console.print(f"  broker   {stack.bootstrap}")
        console.print(f"  admin token: [bold]{stack.admin_token}[/]")
        console.print(
            f"  try: curl -H 'Authorization: Bearer {stack.admin_token}' "
            f"{stack.services['scoring'].url}/v1/leaderboard?kpi=customer_satisfaction"
        )
        console.print("\nPress Ctrl-C to stop.")
        while True:
            time.sleep(1)
            stack.supervise_once()
    except (KeyboardInterrupt, _Stop):
        console.print("\nstopping…")
    except Exception as exc:
        console.print(f"[red]kpi up failed:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        _state_file(stack.home).unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    console.print("stopped; nothing left running")


@app.command()
def migrate(home: HOME_OPTION = Path(".kpi")) -> None:
    """Apply database migrations (alembic upgrade head)."""
    from migrations import upgrade

    upgrade(_database_url(home))
    console.print("database schema at head")


@app.command()
def topics(
    partitions: Annotated[
        int, typer.Option(envvar="KPI_TOPIC_PARTITIONS", min=1, help="Partitions per new topic.")
    ] = 6,
) -> None:
    """Create the platform's topics on KPI_KAFKA_BOOTSTRAP (existing ones are left as they are)."""
    from shared.kafka import ensure_topics
    from shared.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    created = asyncio.run(
        ensure_topics(settings.bootstrap_servers, partitions, settings.topics.all)
    )
    console.print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")


@app.command("replay-deadletter")
def replay_deadletter(
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Only letters with this code (e.g. unknown_type)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Re-validate and report; publish nothing.")
    ] = False,
) -> None:
    """Re-submit dead-lettered events: valid ones to kpi.events, others back with the new reason."""
    from rich.progress import Progress

    from services.ingest.handlers import replay_deadletter as replay
    from shared.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    with Progress(console=console, transient=False) as bar:
        task = bar.add_task("replaying kpi.deadletter", total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        summary = asyncio.run(
            replay(
                settings.bootstrap_servers,
                settings.topics,
                reason=reason,
                dry_run=dry_run,
                progress=advance,
            )
        )
    verb = "would be" if dry_run else "were"
    console.print(
        f"scanned {summary.scanned} dead letters, {summary.matched} matched"
        f"{f' --reason {reason}' if reason else ''}: "
        f"{summary.republished} {verb} published to kpi.events, "
        f"{summary.deadlettered} {verb} dead-lettered again, {summary.unreadable} unreadable"
    )
    for code, n in sorted(summary.by_code.items()):
        console.print(f"  still invalid: {code}: {n}")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, supervisor or service")],
    subject: Annotated[str, typer.Option(help="Who holds it (supervisor id, system name).")] = "",
    team: Annotated[
        list[str] | None, typer.Option(help="Team a supervisor may see (repeat).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Free text note.")] = None,
    home: HOME_OPTION = Path(".kpi"),
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from shared.auth import Role, issue_token
    from shared.db import create_engine, create_sessionmaker, session_scope

    try:
        role_ = Role(role)
    except ValueError:
        console.print(f"[red]--role:[/] must be one of admin, supervisor, service (got '{role}')")
        raise typer.Exit(2) from None
    if role_ is Role.SUPERVISOR and not team and not subject:
        console.print("[red]--team or --subject:[/] a supervisor token needs teams or a subject")
        raise typer.Exit(2)

    async def create() -> str:
        engine = create_engine(_database_url(home), pool_size=1, application_name="kpi-cli")
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                token, _ = await issue_token(
                    session, role_, subject or role_.value, team or (), description
                )
            return token
        finally:
            await engine.dispose()

    print(asyncio.run(create()))


def main() -> None:
    app()
